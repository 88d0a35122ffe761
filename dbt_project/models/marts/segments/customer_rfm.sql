{# RFM: recency, frequency and monetary scores 1-5 for every customer who has bought, on the
   brand's own bounds (var segments.rfm), and the RFM grid segment (seed rfm_segments: R score
   against the rounded-up mean of the F and M scores). #}

{%- set rfm = var('segments')['rfm'] -%}

with

traits as (

    select * from {{ ref('customer_traits') }}
    where frequency > 0

),

grid as (

    select * from {{ ref('rfm_segments') }}

),

scored as (

    select
        person_id,
        recency_days,
        frequency,
        monetary,
        case
            {%- for bound in rfm['recency_days'] %}
            when recency_days <= {{ bound }} then {{ 5 - loop.index0 }}
            {%- endfor %}
            else 1
        end as r_score,
        case
            {%- for bound in rfm['frequency'] | reverse %}
            when frequency >= {{ bound }} then {{ 5 - loop.index0 }}
            {%- endfor %}
            else 1
        end as f_score,
        case
            {%- for bound in rfm['monetary'] | reverse %}
            when monetary >= {{ bound }} then {{ 5 - loop.index0 }}
            {%- endfor %}
            else 1
        end as m_score,
        as_of_date
    from traits

),

final as (

    select
        scored.person_id,
        scored.recency_days,
        scored.frequency,
        scored.monetary,
        scored.r_score,
        scored.f_score,
        scored.m_score,
        {{ dbt.concat([
            'cast(scored.r_score as ' ~ dbt.type_string() ~ ')',
            'cast(scored.f_score as ' ~ dbt.type_string() ~ ')',
            'cast(scored.m_score as ' ~ dbt.type_string() ~ ')',
        ]) }} as rfm_cell,
        cast(ceil((scored.f_score + scored.m_score) / 2.0) as {{ dbt.type_int() }}) as fm_score,
        grid.rfm_segment,
        grid.rfm_segment_ja,
        scored.as_of_date
    from scored
    inner join grid
        on scored.r_score = grid.r_score
        and cast(ceil((scored.f_score + scored.m_score) / 2.0) as {{ dbt.type_int() }}) = grid.fm_score

)

select * from final
