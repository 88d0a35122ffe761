-- Predicted CLV over the next 365 days: mean per customer who bought, and the total.
select
    avg(predicted_clv_365d) as clv_mean,
    sum(predicted_clv_365d) as clv_total
from marts.customer_clv
