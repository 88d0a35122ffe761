with

source as (

    select * from {{ source('activation', 'audience_members') }}

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
