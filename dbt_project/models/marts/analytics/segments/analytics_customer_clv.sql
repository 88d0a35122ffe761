{{ analytics_copy('customer_clv') }}
