with

source as (

    select * from {{ source('line', 'friend_events') }}

),

renamed as (

    select
        {{ dbt.concat([
            'line_user_id', "'|'", 'event', "'|'", timestamp_tz_to_string('event_at'),
        ]) }} as friend_event_id,
        line_user_id,
        event as event_type,
        event_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
