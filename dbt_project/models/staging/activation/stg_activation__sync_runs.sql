{%- set string = dbt.type_string() -%}
{%- set integer = dbt.type_int() -%}
{%- set tstz = type_timestamp_tz() -%}

with

source as (

    select * from {{ source_or_empty('activation', 'sync_runs', {
        'run_id': string, 'audience': string, 'destination': string, 'interval': string,
        'mode': string, 'status': string, 'started_at': tstz, 'finished_at': tstz,
        'adds': integer, 'updates': integer, 'removes': integer, 'delivered': integer,
        'rejected': integer, 'skipped': integer, 'error': string}) }}

),

renamed as (

    select
        run_id as sync_run_id,
        audience,
        destination,
        interval as send_interval,
        mode as sync_mode,
        status as sync_status,
        started_at,
        finished_at,
        adds,
        updates,
        removes,
        delivered,
        rejected,
        skipped,
        error

    from source

)

select * from renamed
