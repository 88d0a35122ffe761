with

source as (

    select * from {{ source('sms', 'messages') }}

),

renamed as (

    select
        sid as message_sid,
        {{ dbt.hash('"to"') }} as to_phone_hash,
        status as carrier_status,
        error_code,
        status = 'delivered' as is_delivered,
        status in ('undelivered', 'failed') as is_undelivered,
        date_created as created_at,
        date_sent as sent_at,
        date_updated as updated_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
