{%- set string = dbt.type_string() -%}
{%- set bigint = dbt.type_bigint() -%}
{%- set tstz = type_timestamp_tz() -%}

with

source as (

    select * from {{ source_or_empty('activation', 'sync_changelog', {
        'id': bigint, 'run_id': string, 'audience': string, 'destination': string, 'person_id': string,
        'operation': string, 'status': string, 'code': string, 'reason': string, 'at': tstz}) }}

),

renamed as (

    select
        id as change_id,
        run_id as sync_run_id,
        audience,
        destination,
        person_id,
        operation,
        status as change_status,
        code,
        reason,
        {{ adapter.quote("at") }} as changed_at

    from source

)

select * from renamed
