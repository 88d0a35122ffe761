{{ analytics_copy('segment_rfmc') }}
