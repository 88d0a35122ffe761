{# Consent per person and channel: the latest event across every system wins (an opt-out wins
   a tie). No event means no consent (no consent, no send). The evidence columns say when,
   where and how the current state was given or withdrawn. #}

with

events as (

    select * from {{ ref('int_consent_events') }}

),

people as (

    select distinct person_id from {{ ref('int_identity_person_ids') }}

),

channels as (

    select channel from {{ ref('channels') }}

),

ranked as (

    select
        events.*,
        row_number() over (
            partition by events.person_id, events.channel
            order by events.event_at desc, case events.action when 'opt_out' then 0 else 1 end, events.source_record asc
        ) as recency_rank,
        count(*) over (partition by events.person_id, events.channel) as event_count,
        max(case when events.action = 'opt_in' then events.event_at end)
            over (partition by events.person_id, events.channel)
            as last_opt_in_at,
        max(case when events.action = 'opt_out' then events.event_at end)
            over (partition by events.person_id, events.channel)
            as last_opt_out_at
    from events

),

latest as (

    select * from ranked
    where recency_rank = 1

),

final as (

    select
        {{ dbt.concat(['people.person_id', "':'", 'channels.channel']) }} as consent_id,
        people.person_id,
        channels.channel,
        case latest.action
            when 'opt_in' then 'opted_in'
            when 'opt_out' then 'opted_out'
            else 'never_given'
        end as consent_status,
        latest.event_at as status_since,
        latest.source,
        latest.source_record,
        latest.evidence,
        coalesce(latest.event_count, 0) as event_count,
        latest.last_opt_in_at,
        latest.last_opt_out_at
    from people
    cross join channels
    left join latest
        on people.person_id = latest.person_id
        and channels.channel = latest.channel

)

select * from final
