{# RFMD: the RFM grid segments by area (region and prefecture), with each cell's size and spend;
   where the good customers live, for store openings, regional DM and events. Customers without
   a known prefecture are grouped under 'unknown'. #}

with

rfm as (

    select * from {{ ref('customer_rfm') }}

),

traits as (

    select * from {{ ref('customer_traits') }}

),

final as (

    select
        rfm.rfm_segment,
        rfm.rfm_segment_ja,
        coalesce(traits.region, 'unknown') as region,
        coalesce(traits.prefecture, 'unknown') as prefecture,
        count(*) as customers,
        sum(rfm.monetary) as lifetime_spend,
        avg(rfm.monetary) as avg_lifetime_spend,
        avg(rfm.frequency) as avg_frequency,
        avg(rfm.recency_days) as avg_recency_days,
        max(rfm.as_of_date) as as_of_date
    from rfm
    inner join traits
        on rfm.person_id = traits.person_id
    group by
        rfm.rfm_segment,
        rfm.rfm_segment_ja,
        coalesce(traits.region, 'unknown'),
        coalesce(traits.prefecture, 'unknown')

)

select * from final
