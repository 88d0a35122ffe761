-- Repeat rate at 30-day steps for the latest 24 acquisition months.
select
    cohort_month,
    days_since_first,
    cohort_size,
    observed_customers,
    repeat_customers,
    repeat_rate
from marts.cohort_repeat_curve
where cohort_month_start >= (select max(cohort_month_start) from marts.cohort_repeat_curve) - interval 23 month
order by cohort_month, days_since_first
