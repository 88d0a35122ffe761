{# Call-centre requests a data steward should confirm: matched by name alone (the opt-out applied,
   to be safe, to every person of that name; an erasure applied to nobody until confirmed) or
   matched to nobody. One row per request. A request the steward has resolved (seed
   callcenter_request_resolutions, where the row applies) leaves the queue. #}

with

resolved as (

    select * from {{ ref('int_callcenter_requests_resolved') }}

),

per_request as (

    select
        request_no,
        max(request_type) as request_type,
        max(request_type_ja) as request_type_ja,
        max(requested_channel) as requested_channel,
        max(received_at) as received_at,
        max(matched_by) as matched_by,
        count(person_id) as people_suppressed
    from resolved
    where not is_resolved_by_steward
    group by request_no

),

final as (

    select
        request_no,
        request_type,
        request_type_ja,
        requested_channel,
        received_at,
        coalesce(matched_by, 'unmatched') as matched_by,
        people_suppressed,
        case
            when matched_by is null then 'nobody matched: find the customer and record the opt-out in the source'
            when request_type = 'erasure'
                then {{ dbt.concat([
                    "'matched by name only: confirm the customer; nobody is erased until then, '",
                    "'and everyone of that name is kept from every channel'",
                ]) }}
            else 'matched by name only: confirm the customer; the opt-out holds for everyone of that name until then'
        end as action
    from per_request
    where matched_by is null or matched_by = 'name_only'

)

select * from final
