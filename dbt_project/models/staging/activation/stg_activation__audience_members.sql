{%- set string = dbt.type_string() -%}
{%- set tstz = type_timestamp_tz() -%}

with

source as (

    select * from {{ source_or_empty('activation', 'audience_members', {
        'run_id': string, 'audience': string, 'person_id': string, 'grp': string,
        'variant': string, 'computed_at': tstz}) }}

),

renamed as (

    select
        run_id,
        audience,
        person_id,
        grp as assigned_group,
        variant,
        computed_at as assigned_at

    from source

)

select * from renamed
