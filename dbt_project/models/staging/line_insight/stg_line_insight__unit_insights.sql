with

source as (

    select * from {{ source('line_insight', 'unit_insights') }}

),

renamed as (

    select
        unit as aggregation_unit,
        sent_on,
        unique_impressions,
        impressions,
        unique_clicks,
        fetched_at

    from source

)

select * from renamed
