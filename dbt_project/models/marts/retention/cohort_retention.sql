{# Monthly cohort retention (コホート分析): customers grouped by the calendar month of their
   first purchase, then followed month by month: how many of them bought in each later month,
   and what they spent. One row per cohort and month from the cohort's month to the last month
   with data before the as-of day, months without any purchase by the cohort included (zeros),
   so every curve is gapless. The months come from the data (every calendar month in which the
   brand had a counted order), not from a fixed list. Revenue is what customers paid (total:
   tax included, after discounts and points). The as-of day's own month, when the as-of day is
   not the 1st, is incomplete: is_complete_month says so. #}

with

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}

),

order_months as (

    select
        person_id,
        purchase_number,
        cast({{ dbt.date_trunc('month', 'order_date') }} as date) as activity_month_start,
        total
    from orders

),

cohort_members as (

    select
        person_id,
        activity_month_start as cohort_month_start
    from order_months
    where purchase_number = 1

),

cohorts as (

    select
        cohort_month_start,
        count(*) as cohort_size
    from cohort_members
    group by cohort_month_start

),

-- The month spine: every calendar month in which the brand had a counted order.
months as (

    select distinct activity_month_start
    from order_months

),

customer_months as (

    select
        cohort_members.cohort_month_start,
        order_months.person_id,
        order_months.activity_month_start,
        cast(sum(order_months.total) as {{ dbt.type_bigint() }}) as revenue
    from order_months
    inner join cohort_members
        on order_months.person_id = cohort_members.person_id
    group by
        cohort_members.cohort_month_start,
        order_months.person_id,
        order_months.activity_month_start

),

activity as (

    select
        cohort_month_start,
        activity_month_start,
        count(*) as active_customers,
        cast(sum(revenue) as {{ dbt.type_bigint() }}) as revenue
    from customer_months
    group by
        cohort_month_start,
        activity_month_start

),

grid as (

    select
        cohorts.cohort_month_start,
        cohorts.cohort_size,
        months.activity_month_start
    from cohorts
    cross join months
    where months.activity_month_start >= cohorts.cohort_month_start

),

counted as (

    select
        grid.cohort_month_start,
        grid.activity_month_start,
        {{ dbt.datediff('grid.cohort_month_start', 'grid.activity_month_start', 'month') | trim }}
            as months_since_first,
        grid.cohort_size,
        coalesce(activity.active_customers, 0) as active_customers,
        coalesce(activity.revenue, 0) as revenue
    from grid
    left join activity
        on grid.cohort_month_start = activity.cohort_month_start
        and grid.activity_month_start = activity.activity_month_start

),

final as (

    select
        substr(cast(cohort_month_start as {{ dbt.type_string() }}), 1, 7) as cohort_month,
        months_since_first,
        substr(cast(activity_month_start as {{ dbt.type_string() }}), 1, 7) as activity_month,
        cohort_month_start,
        activity_month_start,
        cast({{ dbt.dateadd('month', 1, 'activity_month_start') }} as date) <= {{ as_of_date() }} as is_complete_month,
        cohort_size,
        active_customers,
        cast(active_customers as double) / cohort_size as retention_rate,
        revenue,
        cast(revenue as double) / cohort_size as revenue_per_customer,
        cast(
            sum(revenue) over (
                partition by cohort_month_start order by activity_month_start
                rows between unbounded preceding and current row
            ) as double
        ) / cohort_size as cumulative_revenue_per_customer
    from counted

)

select * from final
