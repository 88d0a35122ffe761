-- Products by sales with their cumulative share and ABC class.
select
    sku,
    product_name,
    category,
    sales,
    sales_rank,
    sales_share,
    cumulative_share,
    abc_class
from marts.product_abc
order by sales_rank
