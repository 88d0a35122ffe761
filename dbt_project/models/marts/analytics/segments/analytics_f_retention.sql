{{ analytics_copy('f_retention') }}
