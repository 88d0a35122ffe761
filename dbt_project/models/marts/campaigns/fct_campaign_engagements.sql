{#- One row per campaign send and engagement event (delivery, bounce, open, click, unsubscribe)
    from the email provider's log. An ESP send is matched to Yorisoi's send by person and time
    (within `esp_match_hours` after the ledger's claim). Opens and clicks sooner after sending than
    a person could (mail-privacy prefetch, link scanners) are flagged and do not count. -#}
{%- set cfg = var('campaigns') %}

with

sends as (

    select * from {{ ref('fct_campaign_sends') }}
    where channel = 'email' and delivery_status = 'sent'

),

esp_sends as (

    select * from {{ ref('stg_esp__sends') }}

),

identities as (

    select * from {{ ref('bridge_customer_identities') }}

),

esp_people as (

    select
        esp_sends.*,
        identities.person_id
    from esp_sends
    inner join identities
        on identities.source = 'ecommerce'
        and esp_sends.ec_customer_id = identities.source_id

),

matched as (

    select
        sends.send_key,
        sends.campaign_key,
        sends.person_id,
        sends.channel,
        esp_people.send_id as esp_send_id,
        esp_people.sent_at as esp_sent_at,
        esp_people.is_delivered,
        esp_people.opened_at,
        esp_people.clicked_at,
        esp_people.unsubscribed_at,
        row_number() over (
            partition by sends.send_key order by esp_people.sent_at, esp_people.send_id
        ) as nth_match
    from sends
    inner join esp_people
        on sends.person_id = esp_people.person_id
        and sends.claimed_at <= esp_people.sent_at
        and {{ dbt.dateadd('hour', cfg['esp_match_hours'], 'sends.claimed_at') }} > esp_people.sent_at

),

events as (

    {% for event_type, at, condition in [
        ('delivery', 'esp_sent_at', 'is_delivered'),
        ('bounce', 'esp_sent_at', 'not is_delivered'),
        ('open', 'opened_at', 'opened_at is not null'),
        ('click', 'clicked_at', 'clicked_at is not null'),
        ('unsubscribe', 'unsubscribed_at', 'unsubscribed_at is not null'),
    ] %}
    select
        send_key,
        campaign_key,
        person_id,
        channel,
        esp_send_id,
        '{{ event_type }}' as event_type,
        {{ at }} as event_at,
        {{ dbt.datediff('esp_sent_at', at, 'second') }}
            as seconds_after_send
    from matched
    where nth_match = 1 and {{ condition }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        {{ dbt.concat(["send_key", "'|'", "event_type"]) }} as event_key,
        send_key,
        campaign_key,
        person_id,
        channel,
        esp_send_id,
        event_type,
        event_at,
        coalesce(
            event_type = 'open' and seconds_after_send < {{ cfg['machine_open_within_seconds'] }}, false
        ) as is_machine_open,
        coalesce(
            event_type = 'click' and seconds_after_send < {{ cfg['bot_click_within_seconds'] }}, false
        ) as is_bot_click,
        not coalesce(
            (event_type = 'open' and seconds_after_send < {{ cfg['machine_open_within_seconds'] }})
            or (event_type = 'click' and seconds_after_send < {{ cfg['bot_click_within_seconds'] }}),
            false
        ) as counts_as_engagement
    from events

)

select * from final
