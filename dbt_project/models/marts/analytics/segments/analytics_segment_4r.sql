{{ analytics_copy('segment_4r') }}
