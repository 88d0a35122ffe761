-- F別継続率 for every slice and step.
select
    dimension,
    dimension_value,
    from_f,
    from_f_label,
    customers_at_f,
    customers_at_next,
    conversion_rate,
    matured_customers_at_f,
    conversion_rate_365d
from marts.f_retention
order by dimension, dimension_value, from_f
