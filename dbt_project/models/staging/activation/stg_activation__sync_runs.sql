with

source as (

    select * from {{ source('activation', 'sync_runs') }}

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
