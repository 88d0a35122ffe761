{#- One row per person x audience run x destination, treatment and control alike: control rows
    are "would have been sent" (the destinations the run sent to). Incremental: a run assigned
    within `run_lookback_days` of the newest one built is rebuilt (late settles, the next run
    closing its window). -#}
{{ config(materialized='incremental', unique_key='send_key', on_schema_change='append_new_columns') }}

{%- set lookback = var('campaigns')['run_lookback_days'] %}
{#- Before any run (an empty table, the first build after the store's first landing): all of it. #}
{%- set newest = "coalesce((select max(assigned_at) from " ~ this ~ "), cast('1900-01-01 00:00:00+00' as "
    ~ type_timestamp_tz() ~ "))" %}

with

members as (

    select * from {{ ref('stg_activation__audience_members') }}
    {% if is_incremental() -%}
        where assigned_at >= {{ dbt.dateadd('day', -lookback, newest) }}
    {%- endif %}

),

ledger as (

    select * from {{ ref('stg_activation__ledger_entries') }}
    where not is_test_send
    {% if is_incremental() -%}
        and claimed_at >= {{ dbt.dateadd('day', -lookback, newest) }}
    {%- endif %}

),

audience_runs as (

    select
        audience,
        run_id,
        min(assigned_at) as assigned_at
    from members
    group by audience, run_id

),

-- A run's sends are the ledger rows of its audience claimed from its assignment until the
-- audience's next run was assigned.
run_windows as (

    select
        audience,
        run_id,
        assigned_at,
        lead(assigned_at) over (partition by audience order by assigned_at, run_id) as next_assigned_at
    from audience_runs

),

ledger_in_run as (

    select
        run_windows.run_id,
        ledger.audience,
        ledger.destination,
        ledger.channel,
        ledger.person_id,
        ledger.ledger_status,
        ledger.claimed_at,
        ledger.done_at,
        row_number() over (
            partition by ledger.audience, run_windows.run_id, ledger.destination, ledger.person_id
            order by ledger.claimed_at
        ) as nth_claim
    from ledger
    inner join run_windows
        on ledger.audience = run_windows.audience
        and ledger.claimed_at >= run_windows.assigned_at
        and (run_windows.next_assigned_at is null or ledger.claimed_at < run_windows.next_assigned_at)

),

run_destinations as (

    select distinct
        audience,
        run_id,
        destination,
        channel
    from ledger_in_run

),

final as (

    select
        {{ dbt.concat(["members.audience", "'|'", "members.run_id", "'|'", "run_destinations.destination",
            "'|'", "members.person_id"]) }} as send_key,
        {{ dbt.concat(["members.audience", "'|'", "members.run_id", "'|'", "run_destinations.destination"]) }}
            as campaign_key,
        members.audience,
        members.run_id,
        run_destinations.destination,
        run_destinations.channel,
        members.person_id,
        members.assigned_group,
        members.variant,
        members.assigned_at,
        sent.claimed_at,
        case when sent.ledger_status = 'sent' then sent.done_at end as sent_at,
        case
            when members.assigned_group = 'control' then 'control'
            when sent.person_id is null then 'not_sent'
            when sent.ledger_status = 'sent' then 'sent'
            when sent.ledger_status = 'failed' then 'failed'
            else 'pending'
        end as delivery_status
    from members
    inner join run_destinations
        on members.audience = run_destinations.audience
        and members.run_id = run_destinations.run_id
    left join ledger_in_run as sent
        on members.audience = sent.audience
        and members.run_id = sent.run_id
        and run_destinations.destination = sent.destination
        and members.person_id = sent.person_id
        and sent.nth_claim = 1

)

select * from final
