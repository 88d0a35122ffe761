with

source as (

    select * from {{ source('oms', 'items') }}

),

renamed as (

    select
        item_code,
        item_name,
        category,
        brand,
        taste,
        list_price

    from source

)

select * from renamed
