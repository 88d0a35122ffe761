{# The analysts' orders: fct_orders with the source customer record (an ID in a source
   system) left out; person_id joins to customer_profiles. #}

with

orders as (

    select * from {{ ref('fct_orders') }}

),

final as (

    select
        order_key,
        source,
        order_id,
        person_id,
        channel,
        status,
        is_counted,
        ordered_at,
        subtotal,
        discount,
        shipping_fee,
        points_used,
        points_earned,
        total
    from orders

)

select * from final
