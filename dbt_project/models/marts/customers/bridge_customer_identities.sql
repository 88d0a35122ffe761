{{ config(materialized='view') }}

with

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

final as (

    select
        record_key,
        source,
        source_id,
        person_id,
        resolution
    from person_ids

)

select * from final
