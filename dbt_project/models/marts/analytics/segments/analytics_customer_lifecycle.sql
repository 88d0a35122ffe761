{{ analytics_copy('customer_lifecycle') }}
