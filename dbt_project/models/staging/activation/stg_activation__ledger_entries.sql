with

source as (

    select * from {{ source('activation', 'send_ledger') }}

),

renamed as (

    select
        audience,
        destination,
        interval as send_interval,
        channel,
        person_id,
        {{ dbt.hash('key') }} as recipient_key_hash,
        status as ledger_status,
        claimed_at,
        done_at,
        interval like 'test:%' as is_test_send

    from source

)

select * from renamed
