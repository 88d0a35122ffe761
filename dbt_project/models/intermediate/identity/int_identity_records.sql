{# Every source record that can identify a person, with keyed match keys (HMAC-SHA256) of its
   normalised identifiers. Raw identifiers stay in staging; from here on only keys travel.
   A name in kanji also gets the keys of its candidate readings (yorisoi_name_readings), so a
   record with only kanji can be compared with one that has only kana (docs/identity.md). #}

{#- The kana of a record: its kana field, else a name written in kana only. #}
{%- set kana_or_kana_name -%}
coalesce({{ fold_kana('unioned.name_kana') }}, case when unioned.name_is_kana then unioned.name_readings end)
{%- endset %}

with

ecommerce_customers as (

    select * from {{ ref('stg_ecommerce__customers') }}

),

oms_customers as (

    select * from {{ ref('stg_oms__customers') }}

),

pos_members as (

    select * from {{ ref('stg_pos__members') }}

),

line_friend_events as (

    select * from {{ ref('stg_line__friend_events') }}

),

line_id_links as (

    select * from {{ ref('stg_line__id_links') }}

),

blocked_values as (

    select * from {{ ref('identity_blocked_values') }}

),

ecommerce_records as (

    select
        'ecommerce' as source,
        customer_id as source_id,
        email,
        phone,
        full_name,
        name_kana,
        full_name_given_first,
        name_kana_given_first,
        birth_date,
        postal_code,
        {{ dbt.concat(['city', 'address']) }} as address,
        customer_id as ec_account,
        cast(null as {{ dbt.type_string() }}) as member_card,
        is_test_account,
        created_at
    from ecommerce_customers

),

oms_records as (

    select
        'oms' as source,
        customer_id as source_id,
        email,
        phone,
        full_name,
        name_kana,
        cast(null as {{ dbt.type_string() }}) as full_name_given_first,
        cast(null as {{ dbt.type_string() }}) as name_kana_given_first,
        birth_date,
        postal_code,
        address,
        cast(null as {{ dbt.type_string() }}) as ec_account,
        cast(null as {{ dbt.type_string() }}) as member_card,
        false as is_test_account,
        registered_at as created_at
    from oms_customers

),

pos_records as (

    select
        'pos' as source,
        card_no as source_id,
        email,
        phone,
        cast(null as {{ dbt.type_string() }}) as full_name,
        name_kana,
        cast(null as {{ dbt.type_string() }}) as full_name_given_first,
        cast(null as {{ dbt.type_string() }}) as name_kana_given_first,
        birth_date,
        postal_code,
        cast(null as {{ dbt.type_string() }}) as address,
        cast(null as {{ dbt.type_string() }}) as ec_account,
        card_no as member_card,
        false as is_test_account,
        cast(joined_on as timestamp) as created_at
    from pos_members

),

latest_line_links as (

    select
        line_user_id,
        ec_customer_id,
        row_number() over (partition by line_user_id order by linked_at desc) as link_rank
    from line_id_links

),

line_users as (

    select
        line_user_id,
        min(event_at) as first_seen_at
    from line_friend_events
    group by line_user_id

    union

    select
        line_user_id,
        min(linked_at) as first_seen_at
    from line_id_links
    group by line_user_id

),

line_records as (

    select
        'line' as source,
        line_users.line_user_id as source_id,
        cast(null as {{ dbt.type_string() }}) as email,
        cast(null as {{ dbt.type_string() }}) as phone,
        cast(null as {{ dbt.type_string() }}) as full_name,
        cast(null as {{ dbt.type_string() }}) as name_kana,
        cast(null as {{ dbt.type_string() }}) as full_name_given_first,
        cast(null as {{ dbt.type_string() }}) as name_kana_given_first,
        cast(null as date) as birth_date,
        cast(null as {{ dbt.type_string() }}) as postal_code,
        cast(null as {{ dbt.type_string() }}) as address,
        latest_line_links.ec_customer_id as ec_account,
        cast(null as {{ dbt.type_string() }}) as member_card,
        false as is_test_account,
        min(line_users.first_seen_at) as created_at
    from line_users
    left join latest_line_links
        on line_users.line_user_id = latest_line_links.line_user_id
        and latest_line_links.link_rank = 1
    group by line_users.line_user_id, latest_line_links.ec_customer_id

),

unioned as {{ materialized_cte() }} (

    select * from ecommerce_records
    union all
    select * from oms_records
    union all
    select * from pos_records
    union all
    select * from line_records

),

-- The reading dictionary runs once per distinct name, not per record: a person's records
-- repeat their name, and common names repeat across people (at M, 179 k shop accounts carry
-- 2.7 k distinct names: their readings took 22 s per record and 0.5 s per distinct name).
distinct_names as (

    select full_name as name_text
    from unioned
    where full_name is not null

    union

    select full_name_given_first as name_text
    from unioned
    where full_name_given_first is not null

),

readings as {{ materialized_cte() }} (

    select
        name_text,
        {{ name_readings('name_text') }} as name_readings
    from distinct_names

),

with_readings as (

    select
        unioned.*,
        readings.name_readings,
        coalesce(readings.name_readings = {{ fold_kana('unioned.full_name') }}, false) as name_is_kana,
        {{ dbt.split_part('swapped.name_readings', "'|'", 1) }} as swapped_reading
    from unioned
    left join readings
        on unioned.full_name = readings.name_text
    left join readings as swapped
        on unioned.full_name_given_first = swapped.name_text

),

blocked_emails as (

    select {{ norm_email('value') }} as email
    from blocked_values
    where key_type = 'email'

),

blocked_phones as (

    select {{ norm_phone('value') }} as phone
    from blocked_values
    where key_type = 'phone'

),

keyed as (

    select
        {{ record_key_from_column('unioned.source', 'unioned.source_id') }} as record_key,
        unioned.source,
        unioned.source_id,
        unioned.is_test_account,
        unioned.created_at,
        case
            when blocked_emails.email is null and not {{ placeholder_email('unioned.email') }}
                then {{ match_key('email', 'unioned.email') }}
        end as email_key,
        case
            when
                blocked_phones.phone is null and not {{ placeholder_phone('unioned.phone') }}
                and {{ is_mobile_e164('unioned.phone') }}
                then {{ match_key('phone', 'unioned.phone') }}
        end as mobile_key,
        case
            when
                blocked_phones.phone is null and not {{ placeholder_phone('unioned.phone') }}
                and not {{ is_mobile_e164('unioned.phone') }}
                then {{ match_key('phone', 'unioned.phone') }}
        end as landline_key,
        -- A "name" written in kana only (an operator typing what the caller said) is kana.
        case
            when not unioned.name_is_kana then {{ match_key('name', fold_kanji('unioned.full_name')) }}
        end as name_key,
        case
            when not unioned.name_is_kana
                then {{ match_key('name', fold_kanji('unioned.full_name_given_first')) }}
        end as name_swapped_key,
        {{ match_key('kana', kana_or_kana_name) }} as kana_key,
        {{ match_key('kana', fold_kana('unioned.name_kana_given_first')) }} as kana_swapped_key,
        {{ match_key('kana', "nullif(unioned.swapped_reading, '')") }} as reading_swapped_key,
        {%- for i in range(1, identity_max_readings() + 1) %}
        {{ match_key('kana', "nullif(" ~ dbt.split_part('unioned.name_readings', "'|'", i) ~ ", '')") }}
            as reading_key_{{ i }},
        {%- endfor %}
        {{ match_key('birth', 'cast(unioned.birth_date as ' ~ dbt.type_string() ~ ')') }} as birth_key,
        case
            when not {{ placeholder_postal('unioned.postal_code') }}
                then {{ match_key('postal', 'unioned.postal_code') }}
        end as postal_key,
        {#- The postal area (first three digits): a typo in the last four still compares close. #}
        case
            when not {{ placeholder_postal('unioned.postal_code') }}
                then {{ match_key('postal', 'substring(unioned.postal_code, 1, 3)') }}
        end as postal_area_key,
        case
            when not {{ placeholder_address('unioned.address') }}
                then {{ match_key('address', norm_address('unioned.address')) }}
        end as address_key,
        {{ match_key('ec_account', 'unioned.ec_account') }} as ec_account_key,
        {{ match_key('member_card', 'unioned.member_card') }} as member_card_key
    from with_readings as unioned
    left join blocked_emails
        on unioned.email = blocked_emails.email
    left join blocked_phones
        on unioned.phone = blocked_phones.phone

),

named as (

    select
        keyed.*,
        -- The name in kana to match on: the record's own kana, else its name's likeliest reading.
        coalesce(keyed.kana_key, keyed.reading_key_1) as kana_any_key,
        coalesce(keyed.kana_key, keyed.reading_key_1, keyed.name_key) as who
    from keyed

),

{#- A phone or email many different names give is a placeholder (the shop's own number, an
   operator's stand-in), whatever its shape: it links nothing. #}
{%- set shared_keys = ['email_key', 'mobile_key', 'landline_key'] %}
{% for key in shared_keys %}
junk_{{ key }} as (

    select {{ key }}
    from named
    where {{ key }} is not null
    group by {{ key }}
    having count(distinct who) >= {{ var('identity').junk_min_names }}

),
{% endfor %}

final as (

    select
        {%- for column in ['record_key', 'source', 'source_id', 'is_test_account', 'created_at'] %}
        named.{{ column }},
        {%- endfor %}
        {%- for key in shared_keys %}
        case when junk_{{ key }}.{{ key }} is null then named.{{ key }} end as {{ key }},
        {%- endfor %}
        named.name_key,
        named.name_swapped_key,
        named.kana_key,
        named.kana_swapped_key,
        named.reading_swapped_key,
        {%- for i in range(1, identity_max_readings() + 1) %}
        named.reading_key_{{ i }},
        {%- endfor %}
        named.birth_key,
        named.postal_key,
        named.postal_area_key,
        named.address_key,
        named.ec_account_key,
        named.member_card_key,
        named.kana_any_key,
        case
            when junk_email_key.email_key is not null
                and coalesce(junk_mobile_key.mobile_key, junk_landline_key.landline_key) is not null
                then 'email phone'
            when junk_email_key.email_key is not null then 'email'
            when coalesce(junk_mobile_key.mobile_key, junk_landline_key.landline_key) is not null then 'phone'
        end as junk_values
    from named
    left join junk_email_key
        on named.email_key = junk_email_key.email_key
    left join junk_mobile_key
        on named.mobile_key = junk_mobile_key.mobile_key
    left join junk_landline_key
        on named.landline_key = junk_landline_key.landline_key

)

select * from final
