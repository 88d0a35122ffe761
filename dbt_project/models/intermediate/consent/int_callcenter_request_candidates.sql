{# The answers a data steward can give to a call-centre request (docs/consent.md, "The steward's
   answer"): each record that may be the caller's, and "none of our customers". A steward's row in
   seed callcenter_request_resolutions names one of them by its resolution_code, copied from the
   queue's pick list (optout_request_candidates), so that no mistyped field can name another
   answer: a row applies only when its code is the code of an answer to the request it names.

   A request's candidate records are the records holding the name the operator typed (folded as
   identity folds names; in the order typed or given name first), when at most
   vars.identity.max_review_candidates records hold it in that order: that includes every record
   the name fallback of int_callcenter_requests_resolved reached (a name held by at most
   vars.identity.max_group_size records). A name typed in kana only (the operator wrote what the
   caller said) is compared as identity compares kana: with each record's kana, or the likeliest
   reading of its kanji name (kana_any_key; given name first: kana_swapped_key, else
   reading_swapped_key), under the same bound on the records holding that kana. A name held by
   more records lists none: the steward records the caller's opt-out in the source instead.
   Every request gets the answer "none of our customers" (record_key null).

   resolution_code: the first 12 hex digits (48 bits) of the keyed hash (match_key) of the request
   number and the record key, or of the request number and the token `none`. The build compares a
   row's code only with the codes of the answers to the request the row names, at most
   2 * max_review_candidates + 1 of them (a name typed in kana only is compared in kana alone): a
   mistyped code, or one copied from another request's answer, is taken for one of them with a
   probability below 61 / 2^48 (3 in 10^13). A record key
   holds a colon (`<source>:<id>`), so `none` is no record's. #}

{%- set identity = var('identity') %}

with

requests as (

    select * from {{ ref('stg_callcenter__requests') }}

),

records as (

    select * from {{ ref('int_identity_records') }}

),

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

request_names as (

    select
        request_no,
        full_name,
        {{ fold_kana('full_name') }} as folded_kana,
        {{ name_readings('full_name') }} as readings
    from requests

),

{# A name written in kana only is its own reading (as in int_identity_records): it is compared
   as kana, and as a name with nothing. #}
request_keys as (

    select
        request_no,
        case
            when not coalesce(readings = folded_kana, false)
                then {{ match_key('name', fold_kanji('full_name')) }}
        end as name_key,
        case
            when readings = folded_kana then {{ match_key('kana', 'folded_kana') }}
        end as kana_key
    from request_names

),

{# How many records hold each requested name, in each order and in kana. #}
holders_by_name as (

    select
        name_key,
        count(*) as holders
    from records
    where name_key in (select request_keys.name_key from request_keys)
    group by name_key

),

holders_by_swapped_name as (

    select
        name_swapped_key,
        count(*) as holders
    from records
    where name_swapped_key in (select request_keys.name_key from request_keys)
    group by name_swapped_key

),

holders_by_kana as (

    select
        kana_any_key,
        count(*) as holders
    from records
    where kana_any_key in (select request_keys.kana_key from request_keys)
    group by kana_any_key

),

swapped_kana as (

    select
        record_key,
        source,
        coalesce(kana_swapped_key, reading_swapped_key) as kana_key
    from records
    where coalesce(kana_swapped_key, reading_swapped_key) in (select request_keys.kana_key from request_keys)

),

holders_by_swapped_kana as (

    select
        kana_key,
        count(*) as holders
    from swapped_kana
    group by kana_key

),

by_name as (

    select
        request_keys.request_no,
        records.record_key,
        records.source
    from request_keys
    inner join holders_by_name
        on request_keys.name_key = holders_by_name.name_key
    inner join records
        on request_keys.name_key = records.name_key
    where holders_by_name.holders <= {{ identity.max_review_candidates }}

),

by_swapped_name as (

    select
        request_keys.request_no,
        records.record_key,
        records.source
    from request_keys
    inner join holders_by_swapped_name
        on request_keys.name_key = holders_by_swapped_name.name_swapped_key
    inner join records
        on request_keys.name_key = records.name_swapped_key
    where holders_by_swapped_name.holders <= {{ identity.max_review_candidates }}

),

by_kana as (

    select
        request_keys.request_no,
        records.record_key,
        records.source
    from request_keys
    inner join holders_by_kana
        on request_keys.kana_key = holders_by_kana.kana_any_key
    inner join records
        on request_keys.kana_key = records.kana_any_key
    where holders_by_kana.holders <= {{ identity.max_review_candidates }}

),

by_swapped_kana as (

    select
        request_keys.request_no,
        swapped_kana.record_key,
        swapped_kana.source
    from request_keys
    inner join holders_by_swapped_kana
        on request_keys.kana_key = holders_by_swapped_kana.kana_key
    inner join swapped_kana
        on request_keys.kana_key = swapped_kana.kana_key
    where holders_by_swapped_kana.holders <= {{ identity.max_review_candidates }}

),

answers as (

    select * from by_name
    union
    select * from by_swapped_name
    union
    select * from by_kana
    union
    select * from by_swapped_kana
    union all
    select
        request_no,
        cast(null as {{ dbt.type_string() }}) as record_key,
        cast(null as {{ dbt.type_string() }}) as source
    from requests

),

final as (

    select
        answers.request_no,
        substring(
            {{ match_key('resolution', dbt.concat([
                'answers.request_no', "'|'", "coalesce(answers.record_key, 'none')",
            ])) }},
            1,
            12
        ) as resolution_code,
        answers.record_key,
        answers.source,
        person_ids.person_id
    from answers
    left join person_ids
        on answers.record_key = person_ids.record_key

)

select * from final
