{# A person ID names exactly one cluster: after merges and splits, no two people share an ID. #}
select person_id, count(distinct cluster_key) as clusters
from {{ ref('int_identity_person_ids') }}
group by person_id
having count(distinct cluster_key) > 1
