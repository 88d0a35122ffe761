-- Today's trigger audiences with their 4R reach.
select
    audiences.trigger,
    count(distinct audiences.person_id) as customers,
    any_value(checks.reach_any) as reach_any,
    any_value(checks.can_measure_lift) as can_measure_lift
from marts.trigger_audiences as audiences
left join marts.segment_4r as checks
    on checks.segment_type = 'trigger'
    and checks.segment = audiences.trigger
group by audiences.trigger
order by customers desc
