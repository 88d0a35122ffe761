{{ analytics_copy('product_abc') }}
