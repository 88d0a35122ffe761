{# Every contact key held by a suppressed source record (docs/reliability.md #16): one row per
   channel and keyed contact value. A record is suppressed on a channel when its person may not
   be contacted on it (any reason in deliverable_exclusions). Every record counts, not only the
   golden record's values: a blacklisted OMS customer's second address, typed in full width
   with spaces, still stops a send to another person who gives the same address. Exports drop
   any recipient whose outgoing contact value has a key listed here for the channel.

   Keys are the project's keyed hashes (match_key) of the normalised values, so the table holds
   no personal data: email, phone (E.164), LINE user ID, and for paper mail the postal code with
   the normalised address. #}

with

exclusions as (

    select distinct
        person_id,
        channel
    from {{ ref('deliverable_exclusions') }}

),

person_ids as (

    select
        record_key,
        person_id
    from {{ ref('int_identity_person_ids') }}

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

line_friend_events as (

    select * from {{ ref('stg_line__friend_events') }}

),

line_id_links as (

    select * from {{ ref('stg_line__id_links') }}

),

contacts as (

    select
        {{ record_key('ecommerce', 'customer_id') }} as record_key,
        email,
        phone,
        postal_code,
        {{ dbt.concat(['city', 'address']) }} as address,
        cast(null as {{ dbt.type_string() }}) as line_user_id
    from ecommerce_customers

    union all

    select
        {{ record_key('oms', 'customer_id') }} as record_key,
        email,
        phone,
        postal_code,
        address,
        cast(null as {{ dbt.type_string() }}) as line_user_id
    from oms_customers

    union all

    select
        {{ record_key('pos', 'card_no') }} as record_key,
        email,
        phone,
        postal_code,
        cast(null as {{ dbt.type_string() }}) as address,
        cast(null as {{ dbt.type_string() }}) as line_user_id
    from pos_members

    union all

    select
        {{ record_key('line', 'line_user_id') }} as record_key,
        cast(null as {{ dbt.type_string() }}) as email,
        cast(null as {{ dbt.type_string() }}) as phone,
        cast(null as {{ dbt.type_string() }}) as postal_code,
        cast(null as {{ dbt.type_string() }}) as address,
        line_user_id
    from (
        select line_user_id from line_friend_events
        union
        select line_user_id from line_id_links
    ) as line_users

),

{# The channel each kind of key reaches: the same table as CONTACT_KEYS in
   yorisoi.activation.selection.membership, which keys the outgoing values the same way. #}
keys as (

    select
        record_key,
        'email' as key_type,
        {{ match_key('email', 'email') }} as contact_key
    from contacts
    where email is not null

    union all

    select
        record_key,
        'phone' as key_type,
        {{ match_key('phone', 'phone') }} as contact_key
    from contacts
    where phone is not null

    union all

    select
        record_key,
        'line_user_id' as key_type,
        {{ match_key('line_user_id', 'line_user_id') }} as contact_key
    from contacts
    where line_user_id is not null

    union all

    select
        record_key,
        'postal_address' as key_type,
        {{ match_key('postal_address', dbt.concat(['postal_code', "'|'", norm_name('address')])) }} as contact_key
    from contacts
    where postal_code is not null and {{ norm_name('address') }} is not null

),

channel_key_types as (

    select
        'email' as channel,
        'email' as key_type
    union all
    select
        'sms' as channel,
        'phone' as key_type
    union all
    select
        'call' as channel,
        'phone' as key_type
    union all
    select
        'line' as channel,
        'line_user_id' as key_type
    union all
    select
        'dm' as channel,
        'postal_address' as key_type

),

suppressed_keys as (

    select
        exclusions.channel,
        keys.key_type,
        keys.contact_key,
        keys.record_key
    from exclusions
    inner join person_ids
        on exclusions.person_id = person_ids.person_id
    inner join keys
        on person_ids.record_key = keys.record_key
    inner join channel_key_types
        on exclusions.channel = channel_key_types.channel
        and keys.key_type = channel_key_types.key_type

),

final as (

    select
        {{ dbt.concat(['channel', "':'", 'contact_key']) }} as contact_key_id,
        channel,
        min(key_type) as key_type,
        contact_key,
        count(distinct record_key) as suppressed_records,
        min(record_key) as example_record_key
    from suppressed_keys
    group by channel, contact_key

)

select * from final
