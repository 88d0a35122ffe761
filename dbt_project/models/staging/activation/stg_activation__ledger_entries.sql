{%- set string = dbt.type_string() -%}
{%- set tstz = type_timestamp_tz() -%}

with

source as (

    select * from {{ source_or_empty('activation', 'send_ledger', {
        'audience': string, 'destination': string, 'interval': string, 'key': string,
        'channel': string, 'person_id': string, 'status': string, 'claimed_at': tstz, 'done_at': tstz}) }}

),

renamed as (

    select
        audience,
        destination,
        interval as send_interval,
        channel,
        person_id,
        status as ledger_status,
        claimed_at,
        done_at,
        interval like 'test:%' as is_test_send

    from source

)

select * from renamed
