{{ config(materialized='incremental', full_refresh=false, on_schema_change='fail') }}

{# The history of person_id changes: one row per source record whose person changed in a run.
   `merge`: its old person no longer exists (absorbed into an older one); `split`: its old
   person still exists, the record moved to another. Append-only; never rebuilt. #}

with

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

current_people as (

    select distinct person_id from person_ids

),

changes as (

    select
        {{ dbt.concat([
            'person_ids.record_key', "'|'", 'person_ids.previous_person_id', "'|'", 'person_ids.person_id',
        ]) }} as change_id,
        person_ids.record_key,
        person_ids.previous_person_id as from_person_id,
        person_ids.person_id as to_person_id,
        case when current_people.person_id is null then 'merge' else 'split' end as change_type,
        cast({{ dbt.current_timestamp() }} as timestamp) as changed_at,
        '{{ invocation_id }}' as invocation_id
    from person_ids
    left join current_people
        on person_ids.previous_person_id = current_people.person_id
    where person_ids.previous_person_id is not null
        and person_ids.previous_person_id <> person_ids.person_id

)

select * from changes
{% if is_incremental() %}
where change_id not in (select change_id from {{ this }})
{% endif %}
