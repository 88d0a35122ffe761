{{ analytics_copy('customer_deciles') }}
