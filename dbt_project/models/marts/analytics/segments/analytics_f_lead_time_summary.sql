{{ analytics_copy('f_lead_time_summary') }}
