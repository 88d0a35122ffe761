-- Customers per (before, after) pair of status and RFM segment between two as-of days of the
-- history: the latest, and the latest at least $min_days earlier (else the earliest).
with

days as (

    select distinct as_of_date from marts.customer_segment_history

),

after_day as (

    select max(as_of_date) as day from days

),

before_day as (

    select coalesce(
        (select max(as_of_date) from days where as_of_date <= (select day from after_day) - to_days($min_days)),
        (select min(as_of_date) from days)
    ) as day

),

before as (

    select * from marts.customer_segment_history where as_of_date = (select day from before_day)

),

after as (

    select * from marts.customer_segment_history where as_of_date = (select day from after_day)

),

pairs as (

    select
        coalesce(before.status, '(none)') as status_before,
        coalesce(after.status, '(none)') as status_after,
        coalesce(before.rfm_segment, '(none)') as segment_before,
        coalesce(after.rfm_segment, '(none)') as segment_after
    from before
    full outer join after
        on before.person_id = after.person_id

)

select
    (select day from before_day) as before_date,
    (select day from after_day) as after_date,
    (select count(*) from days) as history_days,
    status_before,
    status_after,
    segment_before,
    segment_after,
    count(*) as customers
from pairs
group by all
order by all
