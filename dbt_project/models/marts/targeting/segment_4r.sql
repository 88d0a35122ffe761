{# The 4R check (DOMAIN: Realistic, Rank, Reach, Response) of every segment marketing targets:
   customer statuses, RFM grid segments and the daily trigger audiences.
   Realistic: its size. Rank: its priority (seed segment_priorities). Reach: how many of them
   may be contacted, per channel (deliverable_customers). Response: whether a control group of
   targeting.holdout_share can detect the relative lift targeting.minimum_lift at the baseline
   conversion targeting.baseline_conversion, and the lift it can detect at this size. #}

{%- set t = var('targeting') -%}
{%- set min_control = min_control_size(
    t['baseline_conversion'], t['minimum_lift'], t['holdout_share'], t['alpha'], t['power']
) -%}
{%- set z_sum = normal_quantile('alpha', t['alpha']) + normal_quantile('power', t['power']) -%}
{%- set channels = ['email', 'line', 'sms', 'dm', 'call'] -%}

with

statuses as (

    select * from {{ ref('customer_status') }}

),

rfm as (

    select * from {{ ref('customer_rfm') }}

),

triggers as (

    select * from {{ ref('trigger_audiences') }}

),

deliverable as (

    select * from {{ ref('deliverable_customers') }}

),

priorities as (

    select * from {{ ref('segment_priorities') }}

),

members as (

    select
        'status' as segment_type,
        status as segment,
        person_id
    from statuses
    union all
    select
        'rfm_segment' as segment_type,
        rfm_segment as segment,
        person_id
    from rfm
    union all
    select distinct
        'trigger' as segment_type,
        trigger as segment,
        person_id
    from triggers

),

person_reach as (

    select
        person_id,
        {%- for channel in channels %}
        max(case when channel = '{{ channel }}' then 1 else 0 end) as on_{{ channel }},
        {%- endfor %}
        1 as on_any
    from deliverable
    group by person_id

),

sized as (

    select
        members.segment_type,
        members.segment,
        count(*) as customers,
        {%- for channel in channels %}
        sum(coalesce(person_reach.on_{{ channel }}, 0)) as reach_{{ channel }},
        {%- endfor %}
        sum(coalesce(person_reach.on_any, 0)) as reach_any
    from members
    left join person_reach
        on members.person_id = person_reach.person_id
    group by members.segment_type, members.segment

),

final as (

    select
        sized.segment_type,
        sized.segment,
        sized.customers,
        priorities.priority,
        priorities.rationale as priority_rationale,
        {%- for channel in channels %}
        sized.reach_{{ channel }},
        {%- endfor %}
        sized.reach_any,
        case when sized.customers > 0 then cast(sized.reach_any as double) / sized.customers end as reach_share,
        {{ t['baseline_conversion'] }} as baseline_conversion,
        {{ t['minimum_lift'] }} as minimum_lift,
        {{ t['holdout_share'] }} as holdout_share,
        cast(floor(sized.reach_any * {{ t['holdout_share'] }}) as {{ dbt.type_bigint() }}) as control_size,
        cast({{ (min_control | round(0, 'ceil')) | int }} as {{ dbt.type_bigint() }}) as min_control_size,
        cast({{ ((min_control / t['holdout_share']) | round(0, 'ceil')) | int }} as {{ dbt.type_bigint() }})
            as min_reachable_size,
        floor(sized.reach_any * {{ t['holdout_share'] }}) >= {{ min_control }} as can_measure_lift,
        {# The relative lift detectable at this size: (z_a + z_b) * standard error / baseline. #}
        case
            when floor(sized.reach_any * {{ t['holdout_share'] }}) >= 1 then
                {{ z_sum }} * sqrt(
                    {{ t['baseline_conversion'] * (1 - t['baseline_conversion']) }}
                    * (
                        cast(1 as double) / floor(sized.reach_any * {{ t['holdout_share'] }})
                        + cast(1 as double) / (sized.reach_any - floor(sized.reach_any * {{ t['holdout_share'] }}))
                    )
                ) / {{ t['baseline_conversion'] }}
        end as detectable_lift,
        {{ as_of_date() }} as as_of_date
    from sized
    left join priorities
        on sized.segment_type = priorities.segment_type
        and sized.segment = priorities.segment

)

select * from final
