{{ analytics_copy('f_lead_times') }}
