{# 2回目購入促進 (second-purchase nudge, F1 → F2): customers who have bought exactly once
   (frequency = 1) and whose first purchase was exactly var triggers.second_purchase_nudge_day
   days before the as-of day, so a daily run catches each of them once. triggered_on is the day of
   the first purchase. #}

{%- set nudge_day = var('triggers')['second_purchase_nudge_day'] -%}

with

traits as (

    select * from {{ ref('customer_traits') }}

),

final as (

    select
        person_id,
        'second_purchase_nudge' as trigger,
        first_order_date as triggered_on,
        {{ as_of_date() }} as as_of_date,
        first_order_date,
        first_channel,
        monetary as first_order_total,
        favourite_category,
        favourite_brand,
        points_balance
    from traits
    where frequency = 1
        and first_order_date = {{ add_days(as_of_date(), -nudge_day) }}

)

select * from final
