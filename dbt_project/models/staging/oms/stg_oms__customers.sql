{{ config(materialized='table') }}

with

source as (

    select * from {{ source('oms', 'customers') }}

),

renamed as (

    select
        customer_id,
        {{ norm_name('name') }} as full_name,
        {{ norm_kana('name_kana') }} as name_kana,
        {{ norm_email('email') }} as email,
        {{ norm_phone('phone') }} as phone,
        {{ norm_postal('postal_code') }} as postal_code,
        prefecture,
        address,
        birth_date,
        case when gender in ('M', 'F') then gender end as gender,
        email_permission as has_email_permission,
        dm_permission as has_dm_permission,
        call_permission as has_call_permission,
        coalesce(blacklisted, false) as is_blacklisted,
        blacklist_reason,
        {{ local_to_timestamp('registered_at') }} as registered_at,
        {{ local_to_timestamp('updated_at') }} as updated_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
