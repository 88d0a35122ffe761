{{ analytics_copy('customer_rfm') }}
