{# リードタイム (lead time) summary per F: how many repeat purchases, and the mean, median and
   quartiles of the days from purchase F to the (F+1)-th. Same grouping as f_lead_times (F 1..4,
   5 = "5 or more", var f_lead_time_max_f). Percentiles are interpolated between the two nearest
   values on every engine: macros/percentiles.sql. #}

{%- set max_f = var('f_lead_time_max_f', 5) %}

with

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}

),

lead_times as (

    select
        cast(
            case
                when purchase_number - 1 >= {{ max_f }} then {{ max_f }}
                else purchase_number - 1
            end as {{ dbt.type_int() }}
        ) as from_f,
        cast(days_since_previous as double) as lead_time_days
    from orders
    where purchase_number >= 2

),

summarised as (

    select
        from_f,
        count(*) as purchases,
        avg(lead_time_days) as mean_days,
        {{ percentile('lead_time_days', 0.25) }} as p25_days,
        {{ percentile('lead_time_days', 0.5) }} as median_days,
        {{ percentile('lead_time_days', 0.75) }} as p75_days,
        {{ percentile('lead_time_days', 0.9) }} as p90_days
    from lead_times
    group by from_f

),

final as (

    select
        from_f,
        case
            when from_f = {{ max_f }} then 'F{{ max_f }}+→next'
            else {{ dbt.concat([
                "'F'",
                'cast(from_f as ' ~ dbt.type_string() ~ ')',
                "'→F'",
                'cast(from_f + 1 as ' ~ dbt.type_string() ~ ')',
            ]) }}
        end as from_f_label,
        purchases,
        mean_days,
        median_days,
        p25_days,
        p75_days,
        p90_days
    from summarised

)

select * from final
