{{ analytics_copy('cohort_repeat_curve') }}
