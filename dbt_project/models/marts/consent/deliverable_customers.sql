{# 配信可能顧客: people who may be contacted on a channel, one row per person and channel. It is
   the customer master minus every exclusion in deliverable_exclusions, so a missing consent
   excludes (no consent, no send). Exports re-check it at send time. #}

with

ledger as (

    select * from {{ ref('consent_ledger') }}

),

exclusions as (

    select distinct
        person_id,
        channel
    from {{ ref('deliverable_exclusions') }}

),

final as (

    select
        ledger.consent_id as deliverable_id,
        ledger.person_id,
        ledger.channel,
        ledger.status_since as consented_at,
        ledger.source as consent_source,
        ledger.source_record as consent_record,
        ledger.evidence as consent_evidence
    from ledger
    left join exclusions
        on ledger.person_id = exclusions.person_id
        and ledger.channel = exclusions.channel
    where ledger.consent_status = 'opted_in'
        and exclusions.person_id is null

)

select * from final
