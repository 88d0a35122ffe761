{{ analytics_copy('customer_traits') }}
