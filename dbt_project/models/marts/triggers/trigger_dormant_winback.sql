{# 休眠掘り起こし (dormant win-back): customers who became dormant on the lookback days (var
   triggers.lookback_days): their days without a purchase crossed var
   segments.status.dormant_after_days then, i.e. recency_days is between dormant_after_days + 1
   and dormant_after_days + lookback_days, so a daily run catches each of them once.
   triggered_on is the day that completed dormant_after_days days without a purchase (the last
   purchase day + dormant_after_days). #}

{%- set lookback_days = var('triggers')['lookback_days'] -%}
{%- set dormant_after_days = var('segments')['status']['dormant_after_days'] -%}

with

traits as (

    select * from {{ ref('customer_traits') }}

),

statuses as (

    select * from {{ ref('customer_status') }}

),

final as (

    select
        traits.person_id,
        'dormant_winback' as trigger,
        {{ add_days('traits.last_order_date', dormant_after_days) }} as triggered_on,
        {{ as_of_date() }} as as_of_date,
        traits.last_order_date,
        traits.recency_days,
        traits.frequency,
        traits.monetary as lifetime_spend,
        statuses.status,
        statuses.status_ja,
        traits.vip_entered_on is not null as was_vip,
        traits.favourite_category,
        traits.points_balance
    from traits
    left join statuses
        on traits.person_id = statuses.person_id
    where traits.frequency > 0
        and traits.recency_days >= {{ dormant_after_days + 1 }}
        and traits.recency_days <= {{ dormant_after_days + lookback_days }}

)

select * from final
