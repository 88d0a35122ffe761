{{ analytics_copy('cohort_retention') }}
