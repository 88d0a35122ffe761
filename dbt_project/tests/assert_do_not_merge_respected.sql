{# A pair a data steward declared different people must not share a person_id, even through
   other records. When this fails, add the pair that joins them to identity_do_not_merge. #}
with
do_not_merge as (select * from {{ ref('identity_do_not_merge') }}),
bridge as (select * from {{ ref('bridge_customer_identities') }})
select do_not_merge.record_a, do_not_merge.record_b, a.person_id
from do_not_merge
inner join bridge as a on do_not_merge.record_a = a.record_key
inner join bridge as b on do_not_merge.record_b = b.record_key
where a.person_id = b.person_id
