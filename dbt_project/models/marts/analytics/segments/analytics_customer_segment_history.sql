{{ analytics_copy('customer_segment_history') }}
