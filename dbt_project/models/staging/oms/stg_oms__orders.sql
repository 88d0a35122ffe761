with

source as (

    select * from {{ source('oms', 'orders') }}

),

renamed as (

    select
        order_id,
        customer_id,
        channel,
        subscription_id,
        nullif(upper(trim(coupon_code)), '') as coupon_code,
        status,
        subtotal,
        discount,
        shipping_fee,
        points_used,
        points_earned,
        total,
        {{ local_to_timestamp('ordered_at') }} as ordered_at,
        {{ local_to_timestamp('shipped_at') }} as shipped_at,
        {{ local_to_timestamp('updated_at') }} as updated_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
