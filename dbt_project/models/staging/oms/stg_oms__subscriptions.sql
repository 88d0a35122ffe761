with

source as (

    select * from {{ source('oms', 'subscriptions') }}

),

renamed as (

    select
        subscription_id,
        customer_id,
        item_code,
        cycle_days,
        status,
        {{ local_to_timestamp('started_at') }} as started_at,
        {{ local_to_timestamp('cancelled_at') }} as cancelled_at,
        {{ local_to_timestamp('updated_at') }} as updated_at

    from source

)

select * from renamed
