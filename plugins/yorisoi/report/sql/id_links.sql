-- ID連携率: customers who bought, linked to each system's ID.
select
    count(*) as customers,
    count(*) filter (where customers.line_user_id is not null) as line,
    count(*) filter (where customers.has_ecommerce_account) as ecommerce,
    count(*) filter (where customers.has_member_card) as member_card,
    count(*) filter (where customers.has_oms_account) as oms
from marts.dim_customers as customers
inner join marts.customer_status as statuses
    on customers.person_id = statuses.person_id
where statuses.status <> 'prospect'
