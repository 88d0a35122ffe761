with

source as (

    select * from {{ source('esp', 'campaigns') }}

),

renamed as (

    select
        cast(campaign_id as {{ dbt.type_string() }}) as campaign_id,
        name as campaign_name,
        channel,
        subject_a,
        subject_b,
        sent_at

    from source

)

select * from renamed
