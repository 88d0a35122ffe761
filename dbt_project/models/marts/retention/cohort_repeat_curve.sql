{# Repeat rate by acquisition month at 30-day steps (LTV-Lab's 初回リピート率): of the customers
   whose first purchase was in a month, the share who made a second purchase within d days of the
   first, for d = 30, 60, ... 720 (var cohort_repeat: step_days, max_days). Right-censoring aware: at step d only customers watched for d
   full days after their first purchase (first purchase more than d days before the as-of day,
   which is exclusive) are counted (observed_customers), so a
   recent cohort's curve simply stops where its customers have not been watched long enough. #}

{%- set curve = var('cohort_repeat', {}) -%}
{%- set step_days = curve.get('step_days', 30) -%}
{%- set steps = range(step_days, curve.get('max_days', 720) + 1, step_days) -%}

with

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}

),

first_two as (

    select
        person_id,
        min(case when purchase_number = 1 then order_date end) as first_order_date,
        min(case when purchase_number = 2 then order_date end) as second_order_date
    from orders
    where purchase_number <= 2
    group by person_id

),

customers as (

    select
        person_id,
        cast({{ dbt.date_trunc('month', 'first_order_date') }} as date) as cohort_month_start,
        {{ days_between('first_order_date', as_of_date()) }} as days_observed,
        {{ days_between('first_order_date', 'second_order_date') }} as days_to_second
    from first_two

),

cohort_sizes as (

    select
        cohort_month_start,
        count(*) as cohort_size
    from customers
    group by cohort_month_start

),

steps as (

    {% for d in steps -%}
    select {{ d }} as days_since_first
    {%- if not loop.last %}
    union all
    {% endif -%}
    {%- endfor %}

),

counted as (

    select
        customers.cohort_month_start,
        steps.days_since_first,
        sum(case when customers.days_observed > steps.days_since_first then 1 else 0 end) as observed_customers,
        sum(
            case
                when customers.days_observed > steps.days_since_first
                    and customers.days_to_second <= steps.days_since_first then 1
                else 0
            end
        ) as repeat_customers
    from customers
    cross join steps
    group by
        customers.cohort_month_start,
        steps.days_since_first

),

final as (

    select
        substr(cast(counted.cohort_month_start as {{ dbt.type_string() }}), 1, 7) as cohort_month,
        counted.cohort_month_start,
        counted.days_since_first,
        cohort_sizes.cohort_size,
        counted.observed_customers,
        counted.repeat_customers,
        case
            when counted.observed_customers > 0
                then cast(counted.repeat_customers as double) / counted.observed_customers
        end as repeat_rate,
        {{ as_of_date() }} as as_of_date
    from counted
    inner join cohort_sizes
        on counted.cohort_month_start = cohort_sizes.cohort_month_start

)

select * from final
