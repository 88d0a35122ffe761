{# The golden record: one row per person. Survivorship (documented in _customers__docs.md):
   each attribute comes from the most trusted system that has it (the order below), and within
   a system from the most recently updated record. A mobile number beats a landline. People
   who asked to be erased keep their row (so IDs and counts stay consistent) with every
   personal field emptied. #}

{%- set attributes = {
    'full_name': "case source when 'oms' then 1 when 'ecommerce' then 2 end",
    'name_kana': "case source when 'oms' then 1 when 'ecommerce' then 2 when 'pos' then 3 end",
    'email': "case source when 'ecommerce' then 1 when 'oms' then 2 when 'pos' then 3 end",
    'phone': "case when " ~ is_mobile_e164('phone') ~ " then 0 else 10 end"
        ~ " + case source when 'oms' then 1 when 'ecommerce' then 2 when 'pos' then 3 end",
    'postal_code': "case source when 'oms' then 1 when 'ecommerce' then 2 when 'pos' then 3 end",
    'birth_date': "case source when 'oms' then 1 when 'pos' then 2 end",
    'gender': "case source when 'oms' then 1 end",
} %}

with

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

ecommerce_customers as (

    select * from {{ ref('stg_ecommerce__customers') }}

),

oms_customers as (

    select * from {{ ref('stg_oms__customers') }}

),

pos_members as (

    select * from {{ ref('stg_pos__members') }}

),

ledger as (

    select * from {{ ref('consent_ledger') }}

),

tombstones as (

    select distinct record_key from {{ ref('erasure_tombstones') }}

),

candidates as (

    select
        {{ record_key('ecommerce', 'customer_id') }} as record_key,
        'ecommerce' as source,
        full_name,
        name_kana,
        email,
        phone,
        postal_code,
        prefecture,
        {{ dbt.concat(['city', 'address']) }} as address,
        cast(null as date) as birth_date,
        cast(null as {{ dbt.type_string() }}) as gender,
        is_test_account,
        false as is_blacklisted,
        updated_at
    from ecommerce_customers

    union all

    select
        {{ record_key('oms', 'customer_id') }} as record_key,
        'oms' as source,
        full_name,
        name_kana,
        email,
        phone,
        postal_code,
        prefecture,
        address,
        birth_date,
        gender,
        false as is_test_account,
        is_blacklisted,
        updated_at
    from oms_customers

    union all

    select
        {{ record_key('pos', 'card_no') }} as record_key,
        'pos' as source,
        cast(null as {{ dbt.type_string() }}) as full_name,
        name_kana,
        email,
        phone,
        postal_code,
        cast(null as {{ dbt.type_string() }}) as prefecture,
        cast(null as {{ dbt.type_string() }}) as address,
        birth_date,
        cast(null as {{ dbt.type_string() }}) as gender,
        false as is_test_account,
        false as is_blacklisted,
        cast(updated_on as timestamp) as updated_at
    from pos_members

),

person_candidates as (

    select
        person_ids.person_id,
        candidates.*
    from candidates
    inner join person_ids
        on candidates.record_key = person_ids.record_key

),

{% for attribute, priority in attributes.items() %}
best_{{ attribute }} as (

    select
        person_id,
        {%- if attribute == 'postal_code' %}
        prefecture,
        address,
        {%- endif %}
        {{ attribute }}
    from (
        select
            person_id,
            {{ attribute }},
            {%- if attribute == 'postal_code' %}
            prefecture,
            address,
            {%- endif %}
            row_number() over (
                partition by person_id order by {{ priority }}, updated_at desc, record_key asc
            ) as survivor_rank
        from person_candidates
        where {{ attribute }} is not null
    ) as ranked
    where survivor_rank = 1

),

{% endfor %}

line_users as (

    select
        person_ids.person_id,
        max(person_ids.source_id) as line_user_id
    from person_ids
    inner join ledger
        on person_ids.person_id = ledger.person_id
        and ledger.channel = 'line'
        and person_ids.record_key = ledger.source_record
    where person_ids.source = 'line'
    group by person_ids.person_id

),

people as (

    select
        person_ids.person_id,
        min(person_ids.person_created_at) as person_created_at,
        count(*) as source_record_count,
        max(case when person_ids.source = 'ecommerce' then 1 else 0 end) = 1 as has_ecommerce_account,
        max(case when person_ids.source = 'oms' then 1 else 0 end) = 1 as has_oms_account,
        max(case when person_ids.source = 'pos' then 1 else 0 end) = 1 as has_member_card,
        max(case when person_ids.source = 'line' then 1 else 0 end) = 1 as is_line_friend,
        max(case when tombstones.record_key is not null then 1 else 0 end) = 1 as is_erased
    from person_ids
    left join tombstones
        on person_ids.record_key = tombstones.record_key
    group by person_ids.person_id

),

flags as (

    select
        person_id,
        max(case when is_test_account then 1 else 0 end) = 1 as is_test_account,
        max(case when is_blacklisted then 1 else 0 end) = 1 as is_blacklisted
    from person_candidates
    group by person_id

),

final as (

    select
        people.person_id,
        {% for attribute in ['full_name', 'name_kana', 'email', 'phone', 'postal_code'] %}
        case when not people.is_erased then best_{{ attribute }}.{{ attribute }} end as {{ attribute }},
        {% endfor %}
        case when not people.is_erased then best_postal_code.prefecture end as prefecture,
        case when not people.is_erased then best_postal_code.address end as address,
        case when not people.is_erased then best_birth_date.birth_date end as birth_date,
        case when not people.is_erased then best_gender.gender end as gender,
        case when not people.is_erased then line_users.line_user_id end as line_user_id,
        people.has_ecommerce_account,
        people.has_oms_account,
        people.has_member_card,
        people.is_line_friend,
        people.source_record_count,
        coalesce(flags.is_test_account, false) as is_test_account,
        coalesce(flags.is_blacklisted, false) as is_blacklisted,
        people.is_erased,
        people.person_created_at
    from people
    {% for attribute in attributes %}
    left join best_{{ attribute }}
        on people.person_id = best_{{ attribute }}.person_id
    {% endfor %}
    left join line_users
        on people.person_id = line_users.person_id
    left join flags
        on people.person_id = flags.person_id

)

select * from final
