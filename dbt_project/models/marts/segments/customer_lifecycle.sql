{# Where each customer stands among the three marketings (3つのマーケティング): acquire
   (新規獲得: prospects and new customers), retain (既存育成: active, good and VIP customers) and
   reactivate (休眠掘り起こし: dormant and churned), with the day they became a VIP and what got
   them there (lifetime spend, purchases or points; var segments.vip). #}

with

statuses as (

    select * from {{ ref('customer_status') }}

),

traits as (

    select * from {{ ref('customer_traits') }}

),

final as (

    select
        statuses.person_id,
        statuses.lifecycle_stage,
        statuses.lifecycle_stage_ja,
        statuses.status,
        traits.first_order_date,
        traits.vip_entered_on is not null as is_vip,
        traits.vip_entered_on,
        traits.vip_reached_by,
        {{ days_between('traits.first_order_date', 'traits.vip_entered_on') }} as days_to_vip,
        statuses.as_of_date
    from statuses
    inner join traits
        on statuses.person_id = traits.person_id

)

select * from final
