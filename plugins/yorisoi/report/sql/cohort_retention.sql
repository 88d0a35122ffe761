-- Monthly retention of the latest 24 acquisition months, their first 24 months.
select
    cohort_month,
    months_since_first,
    cohort_size,
    active_customers,
    retention_rate,
    is_complete_month
from marts.cohort_retention
where cohort_month_start >= (select max(cohort_month_start) from marts.cohort_retention) - interval 23 month
    and months_since_first between 1 and 24
order by cohort_month, months_since_first
