{# No consent, no send (docs/reliability.md #1): nobody whose latest event on a channel is an opt-out,
   or who is blacklisted, erased or a test account, is deliverable on that channel. #}
with
deliverable as (select * from {{ ref('deliverable_customers') }}),
ledger as (select * from {{ ref('consent_ledger') }}),
customers as (select * from {{ ref('dim_customers') }})
select deliverable.person_id, deliverable.channel, ledger.consent_status
from deliverable
inner join ledger
    on deliverable.person_id = ledger.person_id and deliverable.channel = ledger.channel
inner join customers
    on deliverable.person_id = customers.person_id
where ledger.consent_status <> 'opted_in'
    or customers.is_blacklisted
    or customers.is_erased
    or customers.is_test_account
