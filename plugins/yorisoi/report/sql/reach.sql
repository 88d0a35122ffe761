-- Deliverable customers per channel, against every customer in the status mart (prospects too).
select
    deliverable.channel,
    count(distinct deliverable.person_id) as deliverable,
    (select count(*) from marts.customer_status) as people
from marts.deliverable_customers as deliverable
inner join marts.customer_status as statuses
    on deliverable.person_id = statuses.person_id
group by deliverable.channel
order by deliverable desc
