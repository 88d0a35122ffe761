{# 顧客ステータス: each customer's status as of the as-of day, defined by the brand's thresholds
   (var segments.status and segments.vip), checked in this order, the first that holds wins:
   prospect (never bought), churned 離脱, dormant 休眠, vip ロイヤル, new 新規, good 優良,
   active 安定. 新規 is a first-time buyer (F1) whose first purchase is recent: a second purchase
   makes a customer active or good, however soon it comes. A VIP who stops buying becomes dormant: status is about activity, VIP entry is
   kept in customer_traits. #}

{%- set status = var('segments')['status'] -%}

with

traits as (

    select * from {{ ref('customer_traits') }}

),

statuses as (

    select * from {{ ref('customer_statuses') }}

),

classified as (

    select
        person_id,
        case
            when frequency = 0 then 'prospect'
            when recency_days > {{ status['churned_after_days'] }} then 'churned'
            when recency_days > {{ status['dormant_after_days'] }} then 'dormant'
            when vip_entered_on is not null then 'vip'
            when tenure_days <= {{ status['new_within_days'] }} and frequency = 1 then 'new'
            when frequency >= {{ status['good_min_orders'] }}
                or monetary >= {{ status['good_min_spend'] }} then 'good'
            else 'active'
        end as status,
        recency_days,
        frequency,
        monetary,
        as_of_date
    from traits

),

final as (

    select
        classified.person_id,
        classified.status,
        statuses.status_ja,
        statuses.lifecycle_stage,
        statuses.lifecycle_stage_ja,
        classified.recency_days,
        classified.frequency,
        classified.monetary,
        classified.as_of_date
    from classified
    inner join statuses
        on classified.status = statuses.status

)

select * from final
