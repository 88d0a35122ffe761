with

source as (

    select * from {{ source('line_insight', 'unit_link_clicks') }}

),

renamed as (

    select
        unit as aggregation_unit,
        sent_on,
        seq as message_seq,
        url,
        clicks,
        unique_clicks,
        fetched_at

    from source

)

select * from renamed
