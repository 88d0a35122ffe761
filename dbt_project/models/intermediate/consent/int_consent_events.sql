{# Every consent event per person and channel, from every system that records one, with the
   evidence an auditor asks for (特定電子メール法 requires keeping opt-in records).

   Systems that keep only a current flag (the OMS) are dated conservatively: a permission
   counts from the customer's registration, a refusal from the record's last update, so a
   snapshot can never override a later withdrawal made elsewhere. A withdrawal without a date
   of its own is dated when it was last seen (updated or landed), never dropped. An OMS email flag that is
   off means "not given on the order form", not a withdrawal. #}

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

line_friend_events as (

    select * from {{ ref('stg_line__friend_events') }}

),

esp_sends as (

    select * from {{ ref('stg_esp__sends') }}

),

records as (

    select
        record_key,
        email_key
    from {{ ref('int_identity_records') }}

),

callcenter_requests as (

    select * from {{ ref('int_callcenter_requests_resolved') }}

),

channels as (

    select channel from {{ ref('channels') }}

),

shop_marketing as (

    {% for channel in ['email', 'sms'] %}
    select
        {{ record_key('ecommerce', 'customer_id') }} as record_key,
        '{{ channel }}' as channel,
        case {{ channel }}_marketing_state when 'subscribed' then 'opt_in' else 'opt_out' end as action,
        case
            when {{ channel }}_marketing_state = 'subscribed'
                then coalesce({{ channel }}_marketing_updated_at, created_at)
            else coalesce({{ channel }}_marketing_updated_at, updated_at, loaded_at)
        end as event_at,
        'ecommerce' as source,
        {{ dbt.concat(["'shop account " ~ channel ~ "_marketing_state='", channel ~ '_marketing_state']
            + (["coalesce(' (' || email_marketing_opt_in_level || ')', '')"] if channel == 'email' else [])) }}
            as evidence
    from ecommerce_customers
    where {{ channel }}_marketing_state in ('subscribed', 'unsubscribed')
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

oms_email as (

    select
        {{ record_key('oms', 'customer_id') }} as record_key,
        'email' as channel,
        'opt_in' as action,
        registered_at as event_at,
        'oms' as source,
        'order form mail permission = 1' as evidence
    from oms_customers
    where has_email_permission

),

oms_dm_and_call as (

    {% for channel in ['dm', 'call'] %}
    select
        {{ record_key('oms', 'customer_id') }} as record_key,
        '{{ channel }}' as channel,
        case when has_{{ channel }}_permission then 'opt_in' else 'opt_out' end as action,
        case
            when has_{{ channel }}_permission then registered_at
            else coalesce(updated_at, registered_at, loaded_at)
        end as event_at,
        'oms' as source,
        {{ dbt.concat(["'customer master " ~ channel ~ "_permission = '",
            "case when has_" ~ channel ~ "_permission then '1' else '0' end"]) }} as evidence
    from oms_customers
    where has_{{ channel }}_permission is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

line_follows as (

    select
        {{ record_key('line', 'line_user_id') }} as record_key,
        'line' as channel,
        case event_type when 'follow' then 'opt_in' else 'opt_out' end as action,
        event_at,
        'line' as source,
        {{ dbt.concat(["'LINE '", 'event_type']) }} as evidence
    from line_friend_events

),

esp_unsubscribed as (

    select
        {{ record_key('ecommerce', 'ec_customer_id') }} as sent_to_record,
        {{ match_key('email', 'email') }} as email_key,
        unsubscribed_at,
        campaign_id
    from esp_sends
    where unsubscribed_at is not null

),

esp_unsubscribe_records as (

    {# An unsubscribe reaches the shop account it was sent to and every record with the same
       email address (a customer known only to the OMS, a second account). Two equi-joins, not
       one join on "a or b", which no engine can hash. #}
    select
        sent_to_record as record_key,
        unsubscribed_at,
        campaign_id
    from esp_unsubscribed

    union

    select
        records.record_key,
        esp_unsubscribed.unsubscribed_at,
        esp_unsubscribed.campaign_id
    from esp_unsubscribed
    inner join records
        on esp_unsubscribed.email_key = records.email_key

),

esp_unsubscribes as (

    select
        record_key,
        'email' as channel,
        'opt_out' as action,
        unsubscribed_at as event_at,
        'esp' as source,
        {{ dbt.concat(["'unsubscribe link in campaign '", 'campaign_id']) }} as evidence
    from esp_unsubscribe_records

),

record_events as (

    select * from shop_marketing
    union all
    select * from oms_email
    union all
    select * from oms_dm_and_call
    union all
    select * from line_follows
    union all
    select * from esp_unsubscribes

),

person_record_events as (

    select
        person_ids.person_id,
        record_events.channel,
        record_events.action,
        record_events.event_at,
        record_events.source,
        record_events.record_key as source_record,
        record_events.evidence
    from record_events
    inner join person_ids
        on record_events.record_key = person_ids.record_key

),

request_events as (

    select
        callcenter_requests.person_id,
        channels.channel,
        'opt_out' as action,
        callcenter_requests.received_at as event_at,
        'callcenter' as source,
        {{ record_key('callcenter', 'callcenter_requests.request_no') }} as source_record,
        {{ dbt.concat(["'call-centre request '", 'callcenter_requests.request_type_ja',
            "' matched by '", 'callcenter_requests.matched_by']) }} as evidence
    from callcenter_requests
    inner join channels
        on channels.channel = case callcenter_requests.request_type
            when 'stop_mail' then 'dm'
            when 'stop_calls' then 'call'
            when 'stop_messages' then callcenter_requests.requested_channel
        end
        or (callcenter_requests.request_type = 'erasure')
        or (callcenter_requests.request_type = 'stop_messages' and callcenter_requests.requested_channel = 'all')
    where callcenter_requests.person_id is not null

),

unioned as (

    select * from person_record_events
    union all
    select * from request_events

),

final as (

    {# Withdrawals are always dated (see above); a consent without any date cannot be proven. #}
    select * from unioned
    where event_at is not null

)

select * from final
