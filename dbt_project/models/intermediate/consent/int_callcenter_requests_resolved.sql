{# Call-centre requests matched to people. A request names an OMS customer code, or only a name,
   phone and email. An opt-out must reach everyone it plausibly meant, so every match counts:
   the customer code, the email, a mobile number (one person's), or a landline together with
   the same name (a landline alone is the household's), and the same name at a matched
   record's postal code (a part of the person identity resolution could not join).

   A request that matches nobody by an identifier falls back to everyone with the same full
   name (matched_by = name_only), when that name is rare enough to mean the caller: held by at
   most vars.identity.max_group_size records, the bound above which identity resolution stops
   taking a key for one person's (a common name is held by hundreds of customers, and an opt-out that stops hundreds of people
   who never asked is not what the caller meant). The opt-out holds for them until a data
   steward resolves it, because sending to someone who asked to stop is the one mistake that
   cannot be undone. An erasure matched that way erases nobody (erasure_tombstones): deleting
   a namesake's data cannot be undone either. Requests that match nobody (a common name and no
   identifier among them) keep a null person_id, are reported by a test and wait in
   optout_requests_to_review for the steward.

   A request the steward has resolved (seed callcenter_request_resolutions: the resolution code
   of one of its answers in int_callcenter_request_candidates) reaches the person of the record
   the steward picked (matched_by = steward) instead of everyone of the name, or nobody when the
   caller is none of our customers (docs/consent.md, "The steward's answer"). #}

{%- set identity = var('identity') %}

with

requests as (

    select * from {{ ref('stg_callcenter__requests') }}

),

records as (

    select * from {{ ref('int_identity_records') }}

),

resolutions as (

    select * from {{ ref('callcenter_request_resolutions') }}
    where request_no is not null

),

candidates as (

    select * from {{ ref('int_callcenter_request_candidates') }}

),

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

request_keys as (

    select
        request_no,
        oms_customer_id,
        {{ match_key('email', 'email') }} as email_key,
        {{ match_key('phone', 'phone') }} as phone_key,
        {{ match_key('name', fold_kanji('full_name')) }} as name_key
    from requests

),

by_customer_code as (

    select
        request_keys.request_no,
        records.record_key,
        'customer_code' as matched_by
    from request_keys
    inner join records
        on records.source = 'oms'
        and request_keys.oms_customer_id = records.source_id

),

by_email as (

    select
        request_keys.request_no,
        records.record_key,
        'email' as matched_by
    from request_keys
    inner join records
        on request_keys.email_key = records.email_key

),

by_mobile as (

    select
        request_keys.request_no,
        records.record_key,
        'mobile_phone' as matched_by
    from request_keys
    inner join records
        on request_keys.phone_key = records.mobile_key

),

by_landline_and_name as (

    select
        request_keys.request_no,
        records.record_key,
        'landline_and_name' as matched_by
    from request_keys
    inner join records
        on request_keys.phone_key = records.landline_key
        and request_keys.name_key = records.name_key

),

matches as (

    select * from by_customer_code
    union all
    select * from by_email
    union all
    select * from by_mobile
    union all
    select * from by_landline_and_name

),

near_matches as (

    {# The person may be split over records that share nothing with the request but the name:
       a shop account next to the store card the request matched. The opt-out also reaches
       records with the request's name at a postal code of a matched record. #}
    select distinct
        request_keys.request_no,
        records.record_key,
        'name_and_postal' as matched_by
    from request_keys
    inner join matches
        on request_keys.request_no = matches.request_no
    inner join records as matched_records
        on matches.record_key = matched_records.record_key
    inner join records
        on request_keys.name_key = records.name_key
        and matched_records.postal_key = records.postal_key

),

{# Names held by so few records that they can stand for the caller. #}
identifying_names as (

    select name_key
    from records
    where name_key is not null
    group by name_key
    having count(*) <= {{ identity.max_group_size }}

),

by_name_only as (

    select
        request_keys.request_no,
        records.record_key,
        'name_only' as matched_by
    from request_keys
    inner join identifying_names
        on request_keys.name_key = identifying_names.name_key
    inner join records
        on request_keys.name_key = records.name_key
    where request_keys.request_no not in (select matches.request_no from matches)

),

{# A steward's row counts only for a request in the queue (no identifier matched it: the seed
   never adds to or lifts what a code, email or phone reached) and only when its code is the code
   of an answer to that request: a mistyped request number or code, or a code copied from another
   request's answer, names no answer, so it cannot release the namesakes nor stop, or erase,
   someone else. Such a row is ignored, the request stays in the queue, and the test
   assert_steward_resolutions_apply warns. #}
applied_resolutions as (

    select
        resolutions.request_no,
        candidates.record_key
    from resolutions
    inner join candidates
        on resolutions.request_no = candidates.request_no
        and lower(trim(resolutions.resolution_code)) = candidates.resolution_code
    where resolutions.request_no not in (select matches.request_no from matches)

),

by_steward as (

    select
        request_no,
        record_key,
        'steward' as matched_by
    from applied_resolutions
    where record_key is not null

),

unresolved_by_name_only as (

    select by_name_only.*
    from by_name_only
    left join applied_resolutions
        on by_name_only.request_no = applied_resolutions.request_no
    where applied_resolutions.request_no is null

),

all_matches as (

    select * from matches
    union all
    select * from near_matches
    union all
    select * from by_steward
    union all
    select * from unresolved_by_name_only

),

matched_people as (

    select
        all_matches.request_no,
        person_ids.person_id,
        min(all_matches.matched_by) as matched_by
    from all_matches
    inner join person_ids
        on all_matches.record_key = person_ids.record_key
    group by all_matches.request_no, person_ids.person_id

),

final as (

    select
        requests.request_no,
        requests.request_type,
        requests.request_type_ja,
        requests.requested_channel,
        requests.received_at,
        matched_people.person_id,
        matched_people.matched_by,
        coalesce(requests.request_no in (
            select applied_resolutions.request_no from applied_resolutions
        ), false) as is_resolved_by_steward
    from requests
    left join matched_people
        on requests.request_no = matched_people.request_no

)

select * from final
