{# ABC / Pareto analysis of products: every SKU sold in the last N days (var
   segments.decile_period_days) ranked by sales, with its cumulative share. Class A holds the
   products that make the first 70 % of sales, B the next 20 %, C the rest (var segments.abc);
   the product that crosses a line belongs to the class it starts in. #}

{%- set abc = var('segments')['abc'] -%}
{%- set period_days = var('segments')['decile_period_days'] -%}

with

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

products as (

    select * from {{ ref('dim_products') }}

),

{# Store sales without a member card have no person but are sales all the same. #}
counted_orders as (

    select
        order_key,
        {{ to_local_date('ordered_at') }} as order_date
    from {{ ref('fct_orders') }}
    where is_counted

),

product_sales as (

    select
        order_lines.sku,
        sum(order_lines.quantity) as units,
        sum(order_lines.amount) as sales,
        count(distinct order_lines.order_key) as orders
    from order_lines
    inner join counted_orders
        on order_lines.order_key = counted_orders.order_key
    where counted_orders.order_date >= {{ add_days(as_of_date(), -period_days) }}
        and counted_orders.order_date < {{ as_of_date() }}
    group by order_lines.sku

),

ranked as (

    select
        sku,
        units,
        sales,
        orders,
        row_number() over (order by sales desc, sku asc) as sales_rank,
        cast(sales as double) / sum(sales) over () as sales_share,
        cast(sum(sales) over (order by sales desc, sku asc rows between unbounded preceding and current row) as double)
        / sum(sales) over () as cumulative_share
    from product_sales

),

final as (

    select
        ranked.sku,
        products.product_name,
        products.category,
        products.brand,
        products.taste,
        ranked.units,
        ranked.sales,
        ranked.orders,
        ranked.sales_rank,
        ranked.sales_share,
        ranked.cumulative_share,
        case
            when ranked.cumulative_share - ranked.sales_share < {{ abc['a_share'] }} then 'A'
            when ranked.cumulative_share - ranked.sales_share < {{ abc['b_share'] }} then 'B'
            else 'C'
        end as abc_class,
        {{ add_days(as_of_date(), -period_days) }} as period_start,
        {{ as_of_date() }} as as_of_date
    from ranked
    left join products
        on ranked.sku = products.sku

)

select * from final
