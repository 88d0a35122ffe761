-- Each customer's BG/NBD history and Gamma-Gamma spend, with the fitted parameters.
select
    frequency,
    recency_days,
    tenure_days,
    avg_repeat_order_value,
    bgnbd_r,
    bgnbd_alpha,
    bgnbd_a,
    bgnbd_b,
    gg_p,
    gg_q,
    gg_v
from marts.customer_clv
