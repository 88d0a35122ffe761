{# RFMC: the RFM grid segments crossed with customer status (new, active, good, VIP, dormant,
   churned), with each cell's size, spend and average recency; which customers to grow. #}

with

rfm as (

    select * from {{ ref('customer_rfm') }}

),

statuses as (

    select * from {{ ref('customer_status') }}

),

final as (

    select
        rfm.rfm_segment,
        rfm.rfm_segment_ja,
        statuses.status,
        statuses.status_ja,
        count(*) as customers,
        cast(count(*) as double) / sum(count(*)) over () as customer_share,
        sum(rfm.monetary) as lifetime_spend,
        avg(rfm.monetary) as avg_lifetime_spend,
        avg(rfm.frequency) as avg_frequency,
        avg(rfm.recency_days) as avg_recency_days,
        max(rfm.as_of_date) as as_of_date
    from rfm
    inner join statuses
        on rfm.person_id = statuses.person_id
    group by rfm.rfm_segment, rfm.rfm_segment_ja, statuses.status, statuses.status_ja

)

select * from final
