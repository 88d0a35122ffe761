{{ analytics_copy('segment_rfmd') }}
