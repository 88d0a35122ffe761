with

source as (

    select * from {{ source('ecommerce', 'orders') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as order_id,
        name as order_name,
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        'ecommerce' as channel,
        case
            when cancelled_at is not null then 'cancelled'
            when financial_status = 'refunded' then 'returned'
            when fulfillment_status = 'fulfilled' then 'shipped'
            else 'pending'
        end as status,
        subtotal_price as subtotal,
        total_discounts as discount,
        shipping_price as shipping_fee,
        points_used,
        points_earned,
        total_price as total,
        created_at as ordered_at,
        cancelled_at,
        updated_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
