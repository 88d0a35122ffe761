{# Call-centre requests a data steward should confirm: matched by name alone (the opt-out applied,
   to be safe, to every person of that name; an erasure applied to nobody until confirmed) or
   matched to nobody. One row per request. The steward answers a request by copying the
   resolution code of one of its answers in optout_request_candidates into seed
   callcenter_request_resolutions; a request whose row applies leaves the queue. #}

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
            when matched_by is null
                then {{ dbt.concat([
                    "'nobody matched: find the customer and pick the answer in optout_request_candidates, '",
                    "'or record the opt-out in the source when the customer is not listed there'",
                ]) }}
            when request_type = 'erasure'
                then {{ dbt.concat([
                    "'matched by name only: pick the caller in optout_request_candidates; nobody is erased '",
                    "'until then, and everyone of that name is kept from every channel'",
                ]) }}
            else {{ dbt.concat([
                "'matched by name only: pick the caller in optout_request_candidates; '",
                "'the opt-out holds for everyone of that name until then'",
            ]) }}
        end as action
    from per_request
    where matched_by is null or matched_by = 'name_only'

)

select * from final
