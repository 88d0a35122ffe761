with

source as (

    select * from {{ source('ecommerce', 'order_lines') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as order_line_id,
        cast(order_id as {{ dbt.type_string() }}) as order_id,
        cast(product_id as {{ dbt.type_string() }}) as product_id,
        sku,
        title as product_name,
        quantity,
        price as unit_price,
        compare_at_price as list_price,
        price * quantity as amount,
        _loaded_at as loaded_at

    from source

)

select * from renamed
