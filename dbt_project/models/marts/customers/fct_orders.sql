{# Every channel's orders with the person who placed them: web (e-commerce), phone / catalogue /
   fax / subscription (OMS) and store receipts (POS). Store sales without a member card have no
   person. `is_counted` leaves out cancelled and returned orders, the convention of every
   purchase-count metric (F, RFM). #}

with

ecommerce_orders as (

    select * from {{ ref('stg_ecommerce__orders') }}

),

oms_orders as (

    select * from {{ ref('stg_oms__orders') }}

),

pos_receipts as (

    select * from {{ ref('int_pos_receipts_aggregated') }}

),

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

unioned as (

    select
        'ecommerce' as source,
        order_id,
        {{ record_key('ecommerce', 'customer_id') }} as customer_record,
        channel,
        status,
        ordered_at,
        subtotal,
        discount,
        shipping_fee,
        points_used,
        points_earned,
        total
    from ecommerce_orders

    union all

    select
        'oms' as source,
        order_id,
        {{ record_key('oms', 'customer_id') }} as customer_record,
        channel,
        status,
        ordered_at,
        subtotal,
        discount,
        shipping_fee,
        points_used,
        points_earned,
        total
    from oms_orders

    union all

    select
        'pos' as source,
        receipt_no as order_id,
        {{ record_key('pos', 'card_no') }} as customer_record,
        'store' as channel,
        status,
        ordered_at,
        subtotal,
        discount,
        0 as shipping_fee,
        points_used,
        points_earned,
        total
    from pos_receipts

),

final as (

    select
        {{ record_key_from_column('unioned.source', 'unioned.order_id') }} as order_key,
        unioned.source,
        unioned.order_id,
        person_ids.person_id,
        unioned.customer_record,
        unioned.channel,
        unioned.status,
        unioned.status not in ('cancelled', 'returned') as is_counted,
        unioned.ordered_at,
        unioned.subtotal,
        unioned.discount,
        unioned.shipping_fee,
        unioned.points_used,
        unioned.points_earned,
        unioned.total
    from unioned
    left join person_ids
        on unioned.customer_record = person_ids.record_key

)

select * from final
