with

source as (

    select * from {{ source('activation', 'sync_changelog') }}

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
