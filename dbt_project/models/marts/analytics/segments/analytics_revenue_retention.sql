{{ analytics_copy('revenue_retention') }}
