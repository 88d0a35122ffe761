{# リードタイム (lead time) between purchases: how many days after purchase F the (F+1)-th came,
   as a distribution over fixed day bands, per F. F runs 1..4, and 5 stands for "5 or more"
   (every repeat purchase from the 6th on; var f_lead_time_max_f). One row per F and band, bands
   with no purchases included, so each F's shares add up to 1. Only purchases that happened
   count: a customer still waiting for the next purchase is in no band (see f_retention for who
   converts). Lead time = local calendar days between the two purchase days (0 = same day). #}

{%- set max_f = var('f_lead_time_max_f', 5) -%}
{%- set buckets = [
    ('0-7', 0, 7),
    ('8-14', 8, 14),
    ('15-30', 15, 30),
    ('31-60', 31, 60),
    ('61-90', 61, 90),
    ('91-180', 91, 180),
    ('181-365', 181, 365),
    ('366+', 366, none),
] %}

with

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}

),

lead_times as (

    select
        person_id,
        cast(
            case
                when purchase_number - 1 >= {{ max_f }} then {{ max_f }}
                else purchase_number - 1
            end as {{ dbt.type_int() }}
        ) as from_f,
        days_since_previous as lead_time_days
    from orders
    where purchase_number >= 2

),

bucketed as (

    select
        person_id,
        from_f,
        case
            {%- for label, low, high in buckets %}
            {%- if high is not none %}
            when lead_time_days <= {{ high }} then '{{ label }}'
            {%- else %}
            else '{{ label }}'
            {%- endif %}
            {%- endfor %}
        end as lead_time_bucket
    from lead_times

),

counts as (

    select
        from_f,
        lead_time_bucket,
        count(*) as purchases,
        count(distinct person_id) as customers
    from bucketed
    group by
        from_f,
        lead_time_bucket

),

buckets as (

    {% for label, low, high in buckets -%}
    select
        '{{ label }}' as lead_time_bucket,
        {{ loop.index }} as bucket_order,
        {{ low }} as min_days,
        {{ high if high is not none else 'cast(null as ' ~ dbt.type_int() ~ ')' }} as max_days
    {% if not loop.last %}union all
    {% endif %}
    {%- endfor %}

),

f_levels as (

    select distinct from_f
    from lead_times

),

grid as (

    select
        f_levels.from_f,
        buckets.lead_time_bucket,
        buckets.bucket_order,
        buckets.min_days,
        buckets.max_days
    from f_levels
    cross join buckets

),

counted as (

    select
        grid.from_f,
        grid.lead_time_bucket,
        grid.bucket_order,
        grid.min_days,
        grid.max_days,
        coalesce(counts.purchases, 0) as purchases,
        coalesce(counts.customers, 0) as customers
    from grid
    left join counts
        on grid.from_f = counts.from_f
        and grid.lead_time_bucket = counts.lead_time_bucket

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
        lead_time_bucket,
        bucket_order,
        min_days,
        max_days,
        purchases,
        customers,
        cast(purchases as double) / sum(purchases) over (partition by from_f) as share,
        cast(
            sum(purchases) over (
                partition by from_f order by bucket_order
                rows between unbounded preceding and current row
            ) as double
        ) / sum(purchases) over (partition by from_f) as cumulative_share
    from counted

)

select * from final
