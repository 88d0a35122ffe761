{{ config(materialized='table') }}

with

source as (

    select * from {{ source('pos', 'members') }}

),

renamed as (

    select
        card_no,
        {{ norm_kana('name_kana') }} as name_kana,
        {{ norm_phone('phone') }} as phone,
        {{ norm_email('email') }} as email,
        {{ norm_postal('postal_code') }} as postal_code,
        birth_date,
        home_store as home_store_code,
        joined_on,
        updated_on,
        _loaded_at as loaded_at

    from source

)

select * from renamed
