{{ config(materialized=view_calling_udfs()) }}

with

source as (

    select * from {{ source('esp', 'sends') }}

),

renamed as (

    select
        cast(send_id as {{ dbt.type_string() }}) as send_id,
        cast(campaign_id as {{ dbt.type_string() }}) as campaign_id,
        cast(ec_customer_id as {{ dbt.type_string() }}) as ec_customer_id,
        {{ norm_email('email') }} as email,
        variant,
        delivered as is_delivered,
        bounce_type,
        sent_at,
        opened_at,
        clicked_at,
        unsubscribed_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
