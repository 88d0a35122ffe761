{# VIP到達 (VIP reached): customers who became a VIP on the lookback days (var
   triggers.lookback_days), i.e. whose purchase on one of those days first crossed a lifetime
   threshold of var segments.vip (spend, purchases or points earned). They get the thank-you and
   the VIP programme, not a discount. triggered_on is the day they reached VIP. #}

{%- set lookback_days = var('triggers')['lookback_days'] -%}

with

traits as (

    select * from {{ ref('customer_traits') }}

),

final as (

    select
        person_id,
        'vip_reached' as trigger,
        vip_entered_on as triggered_on,
        {{ as_of_date() }} as as_of_date,
        vip_entered_on,
        vip_reached_by,
        frequency,
        monetary,
        points_balance,
        favourite_category
    from traits
    where vip_entered_on >= {{ add_days(as_of_date(), -lookback_days) }}
        and vip_entered_on < {{ as_of_date() }}

)

select * from final
