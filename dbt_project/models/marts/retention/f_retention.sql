{# F別継続率 (retention by purchase count), the F-ladder: of the customers who made at least F
   purchases, how many made an (F+1)-th. One row per slice (overall, first-purchase product and
   its category, first-purchase channel, first-purchase month) and F, for F = 1..var f_retention_max_f (10).
   Purchases are the counted orders before the as-of day (int_customer_orders_sequenced).
   Two views: all-time (every customer who reached F; recent ones have had little time to buy
   again, so it undercounts recent cohorts) and the matured 365-day view (only customers whose
   F-th purchase was at least 365 days before the as-of day, converting if the next purchase
   came within the 365 days starting on the day of the F-th: at most 364 days later, the window
   every matured customer has been watched for in full). Every slice has all F levels; levels
   nobody reached have zero counts and null rates. #}

{%- set max_f = var('f_retention_max_f', 10) -%}
{%- set window_days = 365 %}

with

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}

),

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

products as (

    select * from {{ ref('dim_products') }}

),

first_purchases as (

    select
        person_id,
        order_key,
        channel,
        order_date
    from orders
    where purchase_number = 1

),

-- The line with the largest amount on the first purchase (ties: the smallest SKU).
first_purchase_lines_ranked as (

    select
        first_purchases.person_id,
        order_lines.sku,
        products.category,
        row_number() over (
            partition by first_purchases.person_id
            order by order_lines.amount desc, order_lines.sku asc, order_lines.order_line_key asc
        ) as line_rank
    from first_purchases
    inner join order_lines
        on first_purchases.order_key = order_lines.order_key
    left join products
        on order_lines.sku = products.sku

),

first_products as (

    select
        person_id,
        sku,
        category
    from first_purchase_lines_ranked
    where line_rank = 1

),

customers as (

    select
        first_purchases.person_id,
        coalesce(first_products.sku, 'unknown') as first_product,
        coalesce(first_products.category, 'unknown') as first_category,
        first_purchases.channel as first_channel,
        substr(cast(first_purchases.order_date as {{ dbt.type_string() }}), 1, 7) as cohort_month
    from first_purchases
    left join first_products
        on first_purchases.person_id = first_products.person_id

),

customer_dimensions as (

    select
        person_id,
        'overall' as dimension,
        'all' as dimension_value
    from customers
    union all
    select
        person_id,
        'first_product' as dimension,
        first_product as dimension_value
    from customers
    union all
    select
        person_id,
        'first_category' as dimension,
        first_category as dimension_value
    from customers
    union all
    select
        person_id,
        'first_channel' as dimension,
        first_channel as dimension_value
    from customers
    union all
    select
        person_id,
        'cohort_month' as dimension,
        cohort_month as dimension_value
    from customers

),

-- Each purchase with the date of the person's next one (null: none yet).
steps as (

    select
        person_id,
        purchase_number as from_f,
        order_date,
        next_order_date
    from orders

),

steps_flagged as (

    select
        person_id,
        from_f,
        case when next_order_date is not null then 1 else 0 end as reached_next,
        case
            when {{ days_between('order_date', as_of_date()) }} >= {{ window_days }} then 1 else 0
        end as is_matured,
        case
            when {{ days_between('order_date', as_of_date()) }} >= {{ window_days }}
                and next_order_date is not null
                and {{ days_between('order_date', 'next_order_date') }} < {{ window_days }}
                then 1
            else 0
        end as converted_within_window
    from steps
    where from_f <= {{ max_f }}

),

ladder as (

    select
        customer_dimensions.dimension,
        customer_dimensions.dimension_value,
        steps_flagged.from_f,
        count(*) as customers_at_f,
        cast(sum(steps_flagged.reached_next) as {{ dbt.type_bigint() }}) as customers_at_next,
        cast(sum(steps_flagged.is_matured) as {{ dbt.type_bigint() }}) as matured_customers_at_f,
        cast(sum(steps_flagged.converted_within_window) as {{ dbt.type_bigint() }}) as converted_within_365d
    from steps_flagged
    inner join customer_dimensions
        on steps_flagged.person_id = customer_dimensions.person_id
    group by
        customer_dimensions.dimension,
        customer_dimensions.dimension_value,
        steps_flagged.from_f

),

dimension_values as (

    select distinct
        dimension,
        dimension_value
    from customer_dimensions

),

f_levels as (

    {% for f in range(1, max_f + 1) -%}
    select {{ f }} as from_f
    {% if not loop.last %}union all
    {% endif %}
    {%- endfor %}

),

grid as (

    select
        dimension_values.dimension,
        dimension_values.dimension_value,
        f_levels.from_f
    from dimension_values
    cross join f_levels

),

counted as (

    select
        grid.dimension,
        grid.dimension_value,
        grid.from_f,
        coalesce(ladder.customers_at_f, 0) as customers_at_f,
        coalesce(ladder.customers_at_next, 0) as customers_at_next,
        coalesce(ladder.matured_customers_at_f, 0) as matured_customers_at_f,
        coalesce(ladder.converted_within_365d, 0) as converted_within_365d
    from grid
    left join ladder
        on grid.dimension = ladder.dimension
        and grid.dimension_value = ladder.dimension_value
        and grid.from_f = ladder.from_f

),

final as (

    select
        dimension,
        dimension_value,
        from_f,
        {{ dbt.concat([
            "'F'",
            'cast(from_f as ' ~ dbt.type_string() ~ ')',
            "'→F'",
            'cast(from_f + 1 as ' ~ dbt.type_string() ~ ')',
        ]) }} as from_f_label,
        customers_at_f,
        customers_at_next,
        cast(customers_at_next as double) / nullif(customers_at_f, 0) as conversion_rate,
        matured_customers_at_f,
        converted_within_365d,
        cast(converted_within_365d as double) / nullif(matured_customers_at_f, 0) as conversion_rate_365d
    from counted

)

select * from final
