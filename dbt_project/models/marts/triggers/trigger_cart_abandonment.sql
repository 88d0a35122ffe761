{# カゴ落ち (cart abandonment): people who put something in the shop's cart (add_to_cart) or
   started the checkout (checkout_started) on the lookback days (var triggers.lookback_days: the
   local days before the as-of day) and have placed no counted order since their last such event,
   up to the as-of day. One row per person, with the product of their last cart event for the
   reminder. triggered_on is the local day of that last cart event. #}

with

shop_products as (

    select * from {{ ref('stg_ecommerce__products') }}

),

products as (

    select * from {{ ref('dim_products') }}

),

orders as (

    select * from {{ ref('fct_orders') }}
    where is_counted
        and person_id is not null

),

cart_events as (

    {{ recent_person_web_events(['add_to_cart', 'checkout_started']) }}

),

cart_summary as (

    select
        person_id,
        max(event_at) as last_cart_event_at,
        count(distinct product_id) as cart_skus,
        count(*) as cart_events,
        max(case when event_type = 'checkout_started' then 1 else 0 end) = 1 as started_checkout
    from cart_events
    group by person_id

),

last_events as (

    select
        person_id,
        event_type,
        product_id,
        event_date,
        row_number() over (partition by person_id order by event_at desc, event_id desc) as recency_rank
    from cart_events

),

{# A counted order placed at or after the last cart event, before the as-of day, closes the cart. #}
bought_after as (

    select distinct cart_summary.person_id
    from cart_summary
    inner join orders
        on cart_summary.person_id = orders.person_id
    where orders.ordered_at >= cart_summary.last_cart_event_at
        and {{ to_local_date('orders.ordered_at') }} < {{ as_of_date() }}

),

final as (

    select
        cart_summary.person_id,
        'cart_abandonment' as trigger,
        last_events.event_date as triggered_on,
        {{ as_of_date() }} as as_of_date,
        cart_summary.last_cart_event_at,
        last_events.event_type as last_cart_event_type,
        cart_summary.cart_skus,
        cart_summary.cart_events,
        cart_summary.started_checkout,
        last_events.product_id as last_product_id,
        shop_products.sku as last_product_sku,
        products.product_name as last_product_name,
        products.category as last_product_category
    from cart_summary
    inner join last_events
        on cart_summary.person_id = last_events.person_id
        and last_events.recency_rank = 1
    left join shop_products
        on last_events.product_id = shop_products.product_id
    left join products
        on shop_products.sku = products.sku
    left join bought_after
        on cart_summary.person_id = bought_after.person_id
    where bought_after.person_id is null

)

select * from final
