-- The RFM grid: customers and spend per recency score and FM score.
select
    r_score,
    fm_score,
    any_value(rfm_segment) as rfm_segment,
    any_value(rfm_segment_ja) as rfm_segment_ja,
    count(*) as customers,
    sum(monetary) as monetary
from marts.customer_rfm
group by r_score, fm_score
order by r_score, fm_score
