{{ config(materialized='table') }}

with

source as (

    select * from {{ source('callcenter', 'requests') }}

),

renamed as (

    select
        request_no,
        nullif(upper(trim(customer_code)), '') as oms_customer_id,
        {{ norm_name('name') }} as full_name,
        {{ norm_phone('phone') }} as phone,
        {{ norm_email('email') }} as email,
        channel as requested_channel,
        case request_type
            when '配信停止' then 'stop_messages'
            when '発送停止' then 'stop_mail'
            when '架電停止' then 'stop_calls'
            when '削除依頼' then 'erasure'
        end as request_type,
        request_type as request_type_ja,
        {{ local_to_timestamp('received_at') }} as received_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
