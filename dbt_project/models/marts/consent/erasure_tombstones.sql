{{ config(materialized='incremental', full_refresh=false, unique_key='tombstone_id', on_schema_change='fail') }}

{# People who asked to be erased (削除依頼), one row per source record they held when the request
   was matched. Append-only and never rebuilt: after the OMS or a file re-delivers the same
   records, they stay erased. Holds IDs only, no personal data.

   A request matched by the name alone erases nobody: it reaches everyone of that name, and an
   erasure cannot be undone. Those people are kept from every channel (int_consent_events) and
   the request waits in optout_requests_to_review for a data steward. #}

with

requests as (

    select * from {{ ref('int_callcenter_requests_resolved') }}
    where request_type = 'erasure'
        and person_id is not null
        and matched_by <> 'name_only'

),

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

final as (

    select
        {{ dbt.concat(['person_ids.record_key', "'|'", 'requests.request_no']) }} as tombstone_id,
        person_ids.record_key,
        requests.person_id,
        requests.request_no,
        requests.received_at as requested_at,
        cast({{ dbt.current_timestamp() }} as timestamp) as recorded_at
    from requests
    inner join person_ids
        on requests.person_id = person_ids.person_id

)

select * from final
{% if is_incremental() %}
where tombstone_id not in (select tombstone_id from {{ this }})
{% endif %}
