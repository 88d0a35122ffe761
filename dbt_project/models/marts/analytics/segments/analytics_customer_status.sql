{{ analytics_copy('customer_status') }}
