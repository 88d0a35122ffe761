{#- 要因把握: each campaign's results cut by one factor at a time (status and RFM segment on the
    day of assignment, local send hour and weekday, contacts in the 30 days before, channel), so a
    planner sees where a campaign fell short. Send hour and weekday are local (1 = Monday); a
    control row counts at its assignment time. Status and RFM come from the segment history on or
    before the assignment day (unknown when the history does not reach back). -#}

with

sends as (

    select * from {{ ref('fct_campaign_sends') }}

),

outcomes as (

    select * from {{ ref('fct_campaign_causal_outcomes') }}

),

engagements as (

    select * from {{ ref('fct_campaign_engagements') }}

),

history as (

    select * from {{ ref('customer_segment_history') }}

),

ledger as (

    select * from {{ ref('stg_activation__ledger_entries') }}
    where ledger_status = 'sent' and not is_test_send

),

segment_at_assignment as (

    select
        sends.send_key,
        history.status,
        history.rfm_segment,
        row_number() over (partition by sends.send_key order by history.as_of_date desc) as nth_day
    from sends
    inner join history
        on sends.person_id = history.person_id
        and history.as_of_date <= {{ to_local_date('sends.assigned_at') }}

),

prior_contacts as (

    select
        sends.send_key,
        count(*) as contacts
    from sends
    inner join ledger
        on sends.person_id = ledger.person_id
        and sends.assigned_at > ledger.claimed_at
        and {{ dbt.dateadd('day', -30, 'sends.assigned_at') }} <= ledger.claimed_at
    group by sends.send_key

),

clicked as (

    select distinct send_key
    from engagements
    where event_type = 'click' and counts_as_engagement

),

base as (

    select
        sends.campaign_key,
        sends.channel,
        case when sends.assigned_group = 'control' then 'control' else coalesce(sends.variant, 'treatment') end
            as arm,
        coalesce(segment_at_assignment.status, 'unknown') as status,
        coalesce(segment_at_assignment.rfm_segment, 'unknown') as rfm_segment,
        {{ local_hour('coalesce(sends.sent_at, sends.assigned_at)') }} as send_hour,
        {{ local_isodow('coalesce(sends.sent_at, sends.assigned_at)') }} as send_weekday,
        case
            when coalesce(prior_contacts.contacts, 0) = 0 then '0'
            when prior_contacts.contacts = 1 then '1'
            when prior_contacts.contacts <= 3 then '2-3'
            else '4+'
        end as prior_30d_contacts,
        outcomes.converted,
        outcomes.revenue_in_window,
        clicked.send_key is not null as clicked
    from sends
    inner join outcomes
        on sends.send_key = outcomes.send_key
    left join segment_at_assignment
        on sends.send_key = segment_at_assignment.send_key
        and segment_at_assignment.nth_day = 1
    left join prior_contacts
        on sends.send_key = prior_contacts.send_key
    left join clicked
        on sends.send_key = clicked.send_key

),

factored as (

    {% for factor, expression in [
        ('status', 'status'),
        ('rfm_segment', 'rfm_segment'),
        ('send_hour', dbt.cast('send_hour', dbt.type_string())),
        ('send_weekday', dbt.cast('send_weekday', dbt.type_string())),
        ('prior_30d_contacts', 'prior_30d_contacts'),
        ('channel', 'channel'),
    ] %}
    select
        campaign_key,
        arm,
        '{{ factor }}' as factor,
        {{ expression }} as factor_value,
        converted,
        revenue_in_window,
        clicked
    from base
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        campaign_key,
        arm,
        factor,
        factor_value,
        count(*) as people,
        sum(case when clicked then 1 else 0 end) as clickers,
        sum(case when converted then 1 else 0 end) as converters,
        cast(sum(case when converted then 1 else 0 end) as {{ dbt.type_float() }}) / count(*) as conversion_rate,
        cast(sum(revenue_in_window) as {{ dbt.type_float() }}) / count(*) as revenue_per_recipient
    from factored
    group by campaign_key, arm, factor, factor_value

)

select * from final
