{# デシル分析: customers who bought in the last N days (var segments.decile_period_days) ranked
   by what they spent in that period and split into ten groups of equal size; decile 1 spends
   most. Each row also carries its decile's share of the period's sales and the cumulative share
   down to that decile (the Pareto curve). #}

{%- set period_days = var('segments')['decile_period_days'] -%}

with

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}
    where order_date >= {{ add_days(as_of_date(), -period_days) }}

),

customers as (

    select person_id from {{ ref('customer_traits') }}

),

period_spend as (

    select
        orders.person_id,
        count(*) as period_orders,
        sum(orders.total) as period_spend
    from orders
    inner join customers
        on orders.person_id = customers.person_id
    group by orders.person_id

),

ranked as (

    select
        person_id,
        period_orders,
        period_spend,
        row_number() over (order by period_spend desc, person_id asc) as spend_rank,
        ntile(10) over (order by period_spend desc, person_id asc) as decile
    from period_spend

),

deciles as (

    select
        decile,
        count(*) as decile_customers,
        sum(period_spend) as decile_spend
    from ranked
    group by decile

),

decile_shares as (

    select
        decile,
        decile_customers,
        decile_spend,
        cast(decile_spend as double) / sum(decile_spend) over () as decile_spend_share,
        cast(sum(decile_spend) over (order by decile rows between unbounded preceding and current row) as double)
        / sum(decile_spend) over () as cumulative_spend_share
    from deciles

),

final as (

    select
        ranked.person_id,
        ranked.decile,
        ranked.spend_rank,
        ranked.period_orders,
        ranked.period_spend,
        decile_shares.decile_customers,
        decile_shares.decile_spend,
        decile_shares.decile_spend_share,
        decile_shares.cumulative_spend_share,
        {{ add_days(as_of_date(), -period_days) }} as period_start,
        {{ as_of_date() }} as as_of_date
    from ranked
    inner join decile_shares
        on ranked.decile = decile_shares.decile

)

select * from final
