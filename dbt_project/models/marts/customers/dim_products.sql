{# The catalogue across systems, keyed by SKU (the shop's SKU is the OMS item code and the POS
   商品コード). The shop's product record wins; items only the OMS sells come from its item master. #}

with

shop_products as (

    select * from {{ ref('stg_ecommerce__products') }}

),

oms_items as (

    select * from {{ ref('stg_oms__items') }}

),

from_shop as (

    select
        sku,
        product_name,
        category,
        brand,
        taste,
        list_price,
        sale_price,
        'ecommerce' as source
    from shop_products

),

from_oms_only as (

    select
        oms_items.item_code as sku,
        oms_items.item_name as product_name,
        oms_items.category,
        oms_items.brand,
        oms_items.taste,
        oms_items.list_price,
        cast(null as {{ dbt.type_bigint() }}) as sale_price,
        'oms' as source
    from oms_items
    left join shop_products
        on oms_items.item_code = shop_products.sku
    where shop_products.sku is null

),

final as (

    select * from from_shop
    union all
    select * from from_oms_only

)

select * from final
