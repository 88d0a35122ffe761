{# deliverable_customers = master × channels − exclusions, exactly: no person-channel is both
   deliverable and excluded, and every person-channel is one or the other. #}
{% test assert_deliverable_is_master_minus_exclusions(model) %}
with
ledger as (select person_id, channel, consent_status from {{ ref('consent_ledger') }}),
exclusions as (select distinct person_id, channel from {{ ref('deliverable_exclusions') }}),
deliverable as (select person_id, channel from {{ model }}),
both_sides as (
    select deliverable.person_id, deliverable.channel, 'deliverable and excluded' as problem
    from deliverable
    inner join exclusions
        on deliverable.person_id = exclusions.person_id and deliverable.channel = exclusions.channel
),
neither as (
    select ledger.person_id, ledger.channel, 'neither deliverable nor excluded' as problem
    from ledger
    left join deliverable
        on ledger.person_id = deliverable.person_id and ledger.channel = deliverable.channel
    left join exclusions
        on ledger.person_id = exclusions.person_id and ledger.channel = exclusions.channel
    where deliverable.person_id is null and exclusions.person_id is null
)
select * from both_sides
union all
select * from neither
{% endtest %}
