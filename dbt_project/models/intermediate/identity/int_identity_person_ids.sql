{# Source record -> person_id, stable across runs (published as bridge_customer_identities).
   The table reads its own previous version: when clusters merge, the merged person keeps the
   oldest of the old IDs; when a cluster splits, the part holding most of the old person's
   records keeps the ID and the rest get new ones. New IDs are keyed hashes of the person's
   first record, so they reveal nothing and a rebuild from scratch mints the same IDs for the
   same data; an ID is never given to two people. Every change is recorded in identity_merges. #}

{%- set previous = adapter.get_relation(this.database, this.schema, this.identifier) %}

with

records as {{ inlined_cte() }} (

    select * from {{ ref('int_identity_records') }}

),

clusters as (

    select * from {{ ref('int_identity_clusters') }}

),

previous_assignments as (

    {% if previous is not none %}
    select record_key, person_id, person_created_at
    from {{ prior_version(this) }}
    {% else %}
    select
        cast(null as {{ dbt.type_string() }}) as record_key,
        cast(null as {{ dbt.type_string() }}) as person_id,
        cast(null as timestamp) as person_created_at
    where 1 = 0
    {% endif %}

),

claims as (

    select
        clusters.cluster_key,
        previous_assignments.person_id,
        min(previous_assignments.person_created_at) as person_created_at,
        count(*) as records_held
    from clusters
    inner join previous_assignments
        on clusters.record_key = previous_assignments.record_key
    group by clusters.cluster_key, previous_assignments.person_id

),

owned as (

    {# An old ID goes to the cluster holding most of its records. #}
    select
        cluster_key,
        person_id,
        person_created_at,
        row_number() over (
            partition by person_id order by records_held desc, cluster_key asc
        ) as claim_rank
    from claims

),

kept as (

    {# A cluster owning several old IDs (a merge) keeps the oldest. #}
    select
        cluster_key,
        person_id,
        person_created_at,
        row_number() over (
            partition by cluster_key order by person_created_at, person_id
        ) as age_rank
    from owned
    where claim_rank = 1

),

new_clusters as (

    {# The clusters that kept no old ID: only these need one minted. #}
    select distinct clusters.cluster_key
    from clusters
    left join kept
        on clusters.cluster_key = kept.cluster_key
        and kept.age_rank = 1
    where kept.cluster_key is null

),

minted as (

    {# A new ID is a keyed hash of the cluster's first record. If that record founded an ID that
       is still, or was ever, in use (it now sits in another part of a split person), the hash
       is salted with that ID, so no two people ever share an ID. #}
    select
        cluster_key,
        {{ dbt.concat(["'P'", dbt.right(match_key('person', 'cluster_key'), 19)]) }} as first_choice
    from new_clusters

),

taken as (

    select distinct person_id from previous_assignments

),

cluster_ids as (

    select
        cluster_key,
        person_id,
        person_created_at
    from kept
    where age_rank = 1

    union all

    select
        minted.cluster_key,
        case
            when taken.person_id is null then minted.first_choice
            else {{ dbt.concat([
                "'P'",
                dbt.right(match_key('person', dbt.concat(['minted.cluster_key', "'|'", 'minted.first_choice'])), 19),
            ]) }}
        end as person_id,
        cast({{ dbt.current_timestamp() }} as timestamp) as person_created_at
    from minted
    left join taken
        on minted.first_choice = taken.person_id

),

final as (

    select
        records.record_key,
        records.source,
        records.source_id,
        clusters.cluster_key,
        cluster_ids.person_id,
        cluster_ids.person_created_at,
        previous_assignments.person_id as previous_person_id,
        clusters.resolution
    from records
    inner join clusters
        on records.record_key = clusters.record_key
    inner join cluster_ids
        on clusters.cluster_key = cluster_ids.cluster_key
    left join previous_assignments
        on records.record_key = previous_assignments.record_key

)

select * from final
