-- Decile shares of the period's spend.
select distinct
    decile,
    decile_customers,
    decile_spend,
    decile_spend_share,
    cumulative_spend_share
from marts.customer_deciles
order by decile
