{# 閲覧離脱 (PDP / browse abandonment): people who viewed a product page (product_view) on the
   lookback days (var triggers.lookback_days), then neither put that product in the cart
   (add_to_cart or checkout_started of it) nor bought it (a line of a counted order placed after
   their first view, up to the as-of day). People in cart abandonment for the same days are left
   out: the cart reminder beats the browse reminder, one message per person. One row per person
   with the abandoned product they viewed most (ties: the latest viewed, then the SKU).
   triggered_on is the local day of the last view of that product. #}

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

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

cart_abandonment as (

    select * from {{ ref('trigger_cart_abandonment') }}

),

{# Product, cart and checkout events of known people on the lookback days. #}
person_events as (

    {{ recent_person_web_events(['product_view', 'add_to_cart', 'checkout_started']) }}

),

viewed as (

    select
        person_id,
        product_id,
        count(*) as views,
        min(event_at) as first_viewed_at,
        max(event_at) as last_viewed_at
    from person_events
    where event_type = 'product_view'
    group by person_id, product_id

),

carted as (

    select distinct
        viewed.person_id,
        viewed.product_id
    from viewed
    inner join person_events
        on viewed.person_id = person_events.person_id
        and viewed.product_id = person_events.product_id
    where person_events.event_type in ('add_to_cart', 'checkout_started')
        and person_events.event_at >= viewed.first_viewed_at

),

bought as (

    select distinct
        viewed.person_id,
        viewed.product_id
    from viewed
    inner join shop_products
        on viewed.product_id = shop_products.product_id
    inner join orders
        on viewed.person_id = orders.person_id
    inner join order_lines
        on orders.order_key = order_lines.order_key
        and shop_products.sku = order_lines.sku
    where orders.ordered_at >= viewed.first_viewed_at
        and {{ to_local_date('orders.ordered_at') }} < {{ as_of_date() }}

),

abandoned as (

    select
        viewed.person_id,
        viewed.product_id,
        shop_products.sku,
        viewed.views,
        viewed.last_viewed_at
    from viewed
    left join shop_products
        on viewed.product_id = shop_products.product_id
    left join carted
        on viewed.person_id = carted.person_id
        and viewed.product_id = carted.product_id
    left join bought
        on viewed.person_id = bought.person_id
        and viewed.product_id = bought.product_id
    left join cart_abandonment
        on viewed.person_id = cart_abandonment.person_id
    where carted.person_id is null
        and bought.person_id is null
        and cart_abandonment.person_id is null

),

ranked as (

    select
        abandoned.*,
        count(*) over (partition by abandoned.person_id) as products_abandoned,
        row_number() over (
            partition by abandoned.person_id
            order by abandoned.views desc, abandoned.last_viewed_at desc, abandoned.sku asc, abandoned.product_id asc
        ) as product_rank
    from abandoned

),

final as (

    select
        ranked.person_id,
        'browse_abandonment' as trigger,
        {{ to_local_date('ranked.last_viewed_at') }} as triggered_on,
        {{ as_of_date() }} as as_of_date,
        ranked.product_id,
        ranked.sku,
        products.product_name,
        products.category,
        products.brand,
        ranked.views,
        ranked.last_viewed_at,
        ranked.products_abandoned
    from ranked
    left join products
        on ranked.sku = products.sku
    where ranked.product_rank = 1

)

select * from final
