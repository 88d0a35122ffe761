with

source as (

    select * from {{ source('web', 'events') }}

),

renamed as (

    select
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        anonymous_id,
        cast(ec_customer_id as {{ dbt.type_string() }}) as ec_customer_id,
        event_type,
        cast(product_id as {{ dbt.type_string() }}) as product_id,
        url,
        event_at

    from source

)

select * from renamed
