{# オムニチャネル送客 (cross-channel promotion): customers who buy on one side only, with at
   least var triggers.cross_promotion_min_orders purchases. online_to_store: online-only
   customers living in a prefecture with a store, invited to it (nearest_store: a store in their
   prefecture, the first by store code). store_to_online: store-only customers, invited to the
   online shop. triggered_on is the day of the purchase that reached the minimum number of
   orders. #}

{%- set min_orders = var('triggers')['cross_promotion_min_orders'] -%}

with

traits as (

    select * from {{ ref('customer_traits') }}

),

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}
    where purchase_number = {{ min_orders }}

),

stores as (

    select * from {{ ref('stores') }}

),

prefecture_stores as (

    select
        prefecture,
        store_code,
        store_name,
        row_number() over (partition by prefecture order by store_code) as store_rank
    from stores

),

online_to_store as (

    select
        traits.person_id,
        'online_to_store' as direction,
        prefecture_stores.store_code as nearest_store,
        prefecture_stores.store_name as nearest_store_name
    from traits
    inner join prefecture_stores
        on traits.prefecture = prefecture_stores.prefecture
        and prefecture_stores.store_rank = 1
    where traits.channel_mix = 'online_only'
        and traits.frequency >= {{ min_orders }}

),

store_to_online as (

    select
        person_id,
        'store_to_online' as direction,
        cast(null as {{ dbt.type_string() }}) as nearest_store,
        cast(null as {{ dbt.type_string() }}) as nearest_store_name
    from traits
    where channel_mix = 'store_only'
        and frequency >= {{ min_orders }}

),

promoted as (

    select * from online_to_store
    union all
    select * from store_to_online

),

final as (

    select
        promoted.person_id,
        'cross_promotion' as trigger,
        orders.order_date as triggered_on,
        {{ as_of_date() }} as as_of_date,
        promoted.direction,
        promoted.nearest_store,
        promoted.nearest_store_name,
        traits.channel_mix,
        traits.frequency,
        traits.online_orders,
        traits.store_orders,
        traits.last_order_date,
        traits.prefecture,
        traits.favourite_category
    from promoted
    inner join traits
        on promoted.person_id = traits.person_id
    left join orders
        on promoted.person_id = orders.person_id

)

select * from final
