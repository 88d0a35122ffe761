{# The data steward's pick list (docs/consent.md, "The steward's answer"): for every request in
   optout_requests_to_review, each answer the steward can give, one row each: a record that may be
   the caller's (int_callcenter_request_candidates, is_listed: the records holding the caller's name
   in a form, as typed, given name first or in kana, that at most
   vars.identity.max_review_candidates hold) and "none of our customers". The steward finds
   the caller (calling back, an order number), then copies the row's request_no and
   resolution_code into seed callcenter_request_resolutions. #}

with

queue as (

    select * from {{ ref('optout_requests_to_review') }}

),

candidates as (

    select * from {{ ref('int_callcenter_request_candidates') }}

),

{# The people the name fallback holds the request for until the steward answers. #}
held_by_name as (

    select
        request_no,
        person_id
    from {{ ref('int_callcenter_requests_resolved') }}
    where matched_by = 'name_only'

),

final as (

    select
        queue.request_no,
        queue.request_type,
        queue.request_type_ja,
        queue.requested_channel,
        queue.received_at,
        queue.matched_by,
        case
            when candidates.record_key is null then 'none_of_our_customers'
            else 'caller_is_this_record'
        end as answer,
        candidates.source,
        candidates.record_key,
        candidates.person_id,
        held_by_name.person_id is not null as is_held_until_answered,
        candidates.resolution_code
    from queue
    inner join candidates
        on queue.request_no = candidates.request_no
    left join held_by_name
        on candidates.request_no = held_by_name.request_no
        and candidates.person_id = held_by_name.person_id
    where candidates.is_listed

)

select * from final
