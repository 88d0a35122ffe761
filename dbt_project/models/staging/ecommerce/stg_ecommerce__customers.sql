{{ config(materialized='table') }}

with

source as (

    select * from {{ source('ecommerce', 'customers') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as customer_id,
        {{ norm_email('email') }} as email,
        {{ norm_phone('phone') }} as phone,
        {{ norm_name('last_name') }} as last_name,
        {{ norm_name('first_name') }} as first_name,
        {{ norm_name(dbt.concat(['last_name', 'first_name'])) }} as full_name,
        {{ norm_kana(dbt.concat(['last_name_kana', 'first_name_kana'])) }} as name_kana,
        {{ norm_name(dbt.concat(['first_name', 'last_name'])) }} as full_name_given_first,
        {{ norm_kana(dbt.concat(['first_name_kana', 'last_name_kana'])) }} as name_kana_given_first,
        {{ norm_postal('zip') }} as postal_code,
        province as prefecture,
        city,
        address1 as address,
        coalesce(lower(tags) like '%test%', false) as is_test_account,
        email_marketing_state,
        email_marketing_opt_in_level,
        email_marketing_updated_at,
        sms_marketing_state,
        sms_marketing_updated_at,
        verified_email as is_email_verified,
        birth_date,
        created_at,
        updated_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
