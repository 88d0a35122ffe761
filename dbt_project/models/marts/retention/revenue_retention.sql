{# Gross and net revenue retention (GRR / NRR) by calendar quarter: of the customers who bought
   in the previous quarter (the base), how much of their revenue came back this quarter.
   Gross caps each customer at what they spent in the base quarter (only decline and churn
   count: Σ min(this quarter, previous quarter) / base revenue, at most 100 %); net includes
   customers who spent more (upsell, cross-sell: Σ this quarter / base revenue, may exceed
   100 %). New customers of the quarter are not in either. Only complete quarters, ended before
   the as-of day, and only quarters whose previous quarter has data. Revenue is what customers
   paid (total: tax included, after discounts and points). #}

with

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}

),

order_quarters as (

    select
        person_id,
        cast({{ dbt.date_trunc('quarter', 'order_date') }} as date) as quarter_start,
        total
    from orders

),

customer_quarters as (

    select
        person_id,
        quarter_start,
        cast(sum(total) as {{ dbt.type_bigint() }}) as revenue
    from order_quarters
    group by
        person_id,
        quarter_start

),

-- Quarters with data that ended before the as-of day.
quarters as (

    select
        quarter_start,
        cast({{ dbt.dateadd('month', -3, 'quarter_start') }} as date) as previous_quarter_start
    from (select distinct quarter_start from order_quarters) as present
    where cast({{ dbt.dateadd('month', 3, 'quarter_start') }} as date) <= {{ as_of_date() }}

),

reported_quarters as (

    select quarters.*
    from quarters
    inner join quarters as previous
        on quarters.previous_quarter_start = previous.quarter_start

),

base as (

    select
        reported_quarters.quarter_start,
        reported_quarters.previous_quarter_start,
        customer_quarters.person_id,
        customer_quarters.revenue as base_revenue
    from reported_quarters
    inner join customer_quarters
        on reported_quarters.previous_quarter_start = customer_quarters.quarter_start

),

base_in_period as (

    select
        base.quarter_start,
        base.previous_quarter_start,
        base.person_id,
        base.base_revenue,
        current_quarter.revenue as period_revenue
    from base
    left join customer_quarters as current_quarter
        on base.person_id = current_quarter.person_id
        and base.quarter_start = current_quarter.quarter_start

),

summarised as (

    select
        quarter_start,
        previous_quarter_start,
        count(*) as base_customers,
        cast(sum(base_revenue) as {{ dbt.type_bigint() }}) as base_revenue,
        cast(sum(case when period_revenue is not null then 1 else 0 end) as {{ dbt.type_bigint() }})
            as retained_customers,
        cast(sum(
            case
                when period_revenue is null then 0
                when period_revenue < base_revenue then period_revenue
                else base_revenue
            end
        ) as {{ dbt.type_bigint() }}) as retained_revenue_capped,
        cast(sum(coalesce(period_revenue, 0)) as {{ dbt.type_bigint() }}) as base_revenue_in_period
    from base_in_period
    group by
        quarter_start,
        previous_quarter_start

),

final as (

    select
        {{ dbt.concat([
            'cast(extract(year from quarter_start) as ' ~ dbt.type_string() ~ ')',
            "'-Q'",
            'cast(extract(quarter from quarter_start) as ' ~ dbt.type_string() ~ ')',
        ]) }} as quarter,
        quarter_start,
        {{ dbt.concat([
            'cast(extract(year from previous_quarter_start) as ' ~ dbt.type_string() ~ ')',
            "'-Q'",
            'cast(extract(quarter from previous_quarter_start) as ' ~ dbt.type_string() ~ ')',
        ]) }} as previous_quarter,
        previous_quarter_start,
        base_customers,
        base_revenue,
        retained_customers,
        retained_revenue_capped,
        base_revenue_in_period,
        cast(retained_revenue_capped as double) / nullif(base_revenue, 0) as gross_revenue_retention,
        cast(base_revenue_in_period as double) / nullif(base_revenue, 0) as net_revenue_retention,
        cast(retained_customers as double) / base_customers as customer_retention_rate
    from summarised

)

select * from final
