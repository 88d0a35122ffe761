with

source as (

    select * from {{ source('ecommerce', 'products') }}

),

renamed as (

    select
        cast(id as {{ dbt.type_string() }}) as product_id,
        sku,
        title as product_name,
        vendor as brand,
        product_type as category,
        variant_title as taste,
        price as list_price,
        sale_price,
        created_at,
        updated_at

    from source

)

select * from renamed
