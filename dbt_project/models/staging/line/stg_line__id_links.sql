with

source as (

    select * from {{ source('line', 'id_links') }}

),

renamed as (

    select
        line_user_id,
        cast(ec_customer_id as {{ dbt.type_string() }}) as ec_customer_id,
        linked_at

    from source

)

select * from renamed
