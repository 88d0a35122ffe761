-- Key figures: customers by status, buyers and revenue of the decile period (the last 365 days).
with

statuses as (

    select
        max(as_of_date) as as_of_date,
        count(*) filter (where status <> 'prospect') as customers,
        count(*) filter (where status = 'prospect') as prospects,
        count(*) filter (where status = 'new') as new_customers,
        count(*) filter (where status in ('active', 'good', 'vip')) as active_customers,
        count(*) filter (where status = 'dormant') as dormant_customers,
        count(*) filter (where status = 'churned') as churned_customers
    from marts.customer_status

),

period as (

    select
        count(*) as buyers_12m,
        coalesce(sum(period_spend), 0) as revenue_12m
    from marts.customer_deciles

)

select
    statuses.*,
    period.buyers_12m,
    period.revenue_12m
from statuses
cross join period
