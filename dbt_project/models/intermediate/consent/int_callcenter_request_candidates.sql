{# The answers a data steward can give to a call-centre request (docs/consent.md, "The steward's
   answer"): each record that may be the caller's, and "none of our customers". A steward's row in
   seed callcenter_request_resolutions names one of them by its resolution_code, copied from the
   queue's pick list (optout_request_candidates), so that no mistyped field can name another
   answer: a row applies only when its code is the code of an answer to the request it names.

   A request's candidate records are the records holding the name the operator typed (folded as
   identity folds names), in the order typed or given name first. A name typed in kana only (the
   operator wrote what the caller said) is compared as identity compares kana: with each record's
   kana, or the likeliest reading of its kanji name (kana_any_key; given name first:
   kana_swapped_key, else reading_swapped_key). Each of these two forms is bounded on its own: the
   records holding the name in a form are listed (is_listed, what the pick list shows) when at
   most vars.identity.max_review_candidates hold it in that form. That includes every record the
   name fallback of int_callcenter_requests_resolved reached (a name held by at most
   vars.identity.max_group_size records in the order typed), so the bound may not be below it.
   name_holders counts the records holding the name in either form; is_list_complete says that
   every one of them is listed and the name was typed in kanji (a name typed in kana misses a
   caller whose kanji name reads otherwise). Every request gets the answer "none of our customers"
   (record_key null).

   A request named in the seed also gets every holder of its name, listed or not (is_listed
   false), so that a steward's pick keeps applying when more records come to hold the name than
   the pick list shows.

   resolution_code: the first 12 hex digits (48 bits) of the keyed hash (match_key) of the request
   number and the record key, or of the request number and the token `none`. The build compares a
   row's code only with the codes of the answers to the request the row names, name_holders + 1 of
   them: a mistyped code, or one copied from another request's answer, is taken for one of them
   with a probability of (name_holders + 1) / 2^48 (below 4 in 10^11 for 10,000 holders). A
   record key holds a colon (`<source>:<id>`), so `none` is no record's. #}

{%- set identity = var('identity') %}
{%- if identity.max_review_candidates < identity.max_group_size %}
    {{ exceptions.raise_compiler_error(
        "vars.identity.max_review_candidates (" ~ identity.max_review_candidates
        ~ ") is below vars.identity.max_group_size (" ~ identity.max_group_size
        ~ "): the pick list would not list everyone the name fallback stops"
    ) }}
{%- endif %}

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

seeded_requests as (

    select distinct request_no
    from {{ ref('callcenter_request_resolutions') }}
    where request_no is not null

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

{# How many records hold each requested name, in each order and in kana; and how many hold it
   in both (a record counted twice in the sum of the two). #}
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

holders_by_name_in_both_orders as (

    select
        name_key,
        count(*) as holders
    from records
    where
        name_key = name_swapped_key
        and name_key in (select request_keys.name_key from request_keys)
    group by name_key

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
        kana_any_key,
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

holders_by_kana_in_both_orders as (

    select
        kana_key,
        count(*) as holders
    from swapped_kana
    where kana_any_key = kana_key
    group by kana_key

),

request_holders as (

    select
        request_keys.request_no,
        request_keys.name_key,
        request_keys.kana_key,
        coalesce(holders_by_name.holders, 0) <= {{ identity.max_review_candidates }} as is_name_listed,
        coalesce(holders_by_swapped_name.holders, 0)
        <= {{ identity.max_review_candidates }} as is_swapped_name_listed,
        coalesce(holders_by_kana.holders, 0) <= {{ identity.max_review_candidates }} as is_kana_listed,
        coalesce(holders_by_swapped_kana.holders, 0)
        <= {{ identity.max_review_candidates }} as is_swapped_kana_listed,
        coalesce(holders_by_name.holders, 0)
        + coalesce(holders_by_swapped_name.holders, 0)
        - coalesce(holders_by_name_in_both_orders.holders, 0)
        + coalesce(holders_by_kana.holders, 0)
        + coalesce(holders_by_swapped_kana.holders, 0)
        - coalesce(holders_by_kana_in_both_orders.holders, 0) as name_holders,
        request_keys.request_no in (select seeded_requests.request_no from seeded_requests) as is_seeded
    from request_keys
    left join holders_by_name
        on request_keys.name_key = holders_by_name.name_key
    left join holders_by_swapped_name
        on request_keys.name_key = holders_by_swapped_name.name_swapped_key
    left join holders_by_name_in_both_orders
        on request_keys.name_key = holders_by_name_in_both_orders.name_key
    left join holders_by_kana
        on request_keys.kana_key = holders_by_kana.kana_any_key
    left join holders_by_swapped_kana
        on request_keys.kana_key = holders_by_swapped_kana.kana_key
    left join holders_by_kana_in_both_orders
        on request_keys.kana_key = holders_by_kana_in_both_orders.kana_key

),

by_name as (

    select
        request_holders.request_no,
        records.record_key,
        records.source,
        request_holders.is_name_listed as is_listed
    from request_holders
    inner join records
        on request_holders.name_key = records.name_key
    where request_holders.is_name_listed or request_holders.is_seeded

),

by_swapped_name as (

    select
        request_holders.request_no,
        records.record_key,
        records.source,
        request_holders.is_swapped_name_listed as is_listed
    from request_holders
    inner join records
        on request_holders.name_key = records.name_swapped_key
    where request_holders.is_swapped_name_listed or request_holders.is_seeded

),

by_kana as (

    select
        request_holders.request_no,
        records.record_key,
        records.source,
        request_holders.is_kana_listed as is_listed
    from request_holders
    inner join records
        on request_holders.kana_key = records.kana_any_key
    where request_holders.is_kana_listed or request_holders.is_seeded

),

by_swapped_kana as (

    select
        request_holders.request_no,
        swapped_kana.record_key,
        swapped_kana.source,
        request_holders.is_swapped_kana_listed as is_listed
    from request_holders
    inner join swapped_kana
        on request_holders.kana_key = swapped_kana.kana_key
    where request_holders.is_swapped_kana_listed or request_holders.is_seeded

),

holder_rows as (

    select * from by_name
    union all
    select * from by_swapped_name
    union all
    select * from by_kana
    union all
    select * from by_swapped_kana

),

{# A record holding the name in two forms is listed when either form is. #}
holders as (

    select
        request_no,
        record_key,
        source,
        max(case when is_listed then 1 else 0 end) = 1 as is_listed
    from holder_rows
    group by request_no, record_key, source

),

answers as (

    select * from holders
    union all
    select
        request_no,
        cast(null as {{ dbt.type_string() }}) as record_key,
        cast(null as {{ dbt.type_string() }}) as source,
        true as is_listed
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
        person_ids.person_id,
        answers.is_listed,
        request_holders.name_holders,
        request_holders.name_key is not null
        and request_holders.is_name_listed
        and request_holders.is_swapped_name_listed as is_list_complete
    from answers
    inner join request_holders
        on answers.request_no = request_holders.request_no
    left join person_ids
        on answers.record_key = person_ids.record_key

)

select * from final
