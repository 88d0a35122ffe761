{#- One row per campaign send and engagement event, from each channel's own report:
    - email: the provider's log (delivery, bounce, open, click, unsubscribe), an ESP send matched
      to Yorisoi's send by person and time (within `esp_match_hours` after the ledger's claim);
    - SMS: the provider's delivery receipt (delivery, or bounce: undelivered / failed), matched by
      the send ledger's recipient key (hashed) and time;
    - LINE: a click on the campaign's tracked link (a web page view whose URL carries
      utm_source=line and utm_campaign=<audience>) by a signed-in shop account, credited to the
      person's latest LINE send of that audience within `tracked_click_days` before it. A
      multicast is one message for everyone, so only the shop session names the recipient; LINE
      itself gives no per-person opens or clicks (its aggregate statistics:
      fct_campaign_line_insights).
    Opens and clicks sooner after sending than a person could (mail-privacy prefetch, link
    scanners) are flagged and do not count. -#}
{%- set cfg = var('campaigns') %}
{#- LINE clicks sooner after the send than a person could click rank last (link scanners). #}
{%- set scanner_last -%}
    case
        when {{ dbt.datediff('sent_at', 'clicked_at', 'second') }} < {{ cfg['bot_click_within_seconds'] }} then 1
        else 0
    end
{%- endset %}

with

sends as (

    select * from {{ ref('fct_campaign_sends') }}
    where channel in ('email', 'sms', 'line') and delivery_status = 'sent'

),

esp_sends as (

    select * from {{ ref('stg_esp__sends') }}

),

sms_receipts as (

    select * from {{ ref('stg_sms__messages') }}
    where is_delivered or is_undelivered

),

ledger as (

    select * from {{ ref('stg_activation__ledger_entries') }}
    where channel = 'sms' and ledger_status = 'sent' and not is_test_send

),

web_events as (

    select * from {{ ref('stg_web__events') }}
    where url like '%utm_source=line%' and ec_customer_id is not null

),

identities as (

    select * from {{ ref('bridge_customer_identities') }}
    where source = 'ecommerce'

),

esp_people as (

    select
        esp_sends.*,
        identities.person_id
    from esp_sends
    inner join identities
        on esp_sends.ec_customer_id = identities.source_id

),

email_candidates as (

    select
        sends.send_key,
        sends.campaign_key,
        sends.person_id,
        sends.channel,
        esp_people.send_id as report_id,
        esp_people.sent_at as reported_sent_at,
        esp_people.is_delivered,
        esp_people.opened_at,
        esp_people.clicked_at,
        esp_people.unsubscribed_at
    from sends
    inner join esp_people
        on sends.person_id = esp_people.person_id
        and {{ within_window('esp_people.sent_at', 'sends.claimed_at', cfg['esp_match_hours'], 'hour') }}
    where sends.channel = 'email'

),

-- Each send's first report: the earliest in the window.
email_matched as (

    {{ first_match('email_candidates', 'send_key', 'reported_sent_at, report_id') }}

),

-- The ledger row of each SMS send carries the number it went to (hashed), as the receipt does.
sms_candidates as (

    select
        sends.send_key,
        sends.campaign_key,
        sends.person_id,
        sends.channel,
        sms_receipts.message_sid as report_id,
        sms_receipts.created_at as reported_sent_at,
        sms_receipts.is_delivered
    from sends
    inner join ledger
        on sends.audience = ledger.audience
        and sends.destination = ledger.destination
        and sends.person_id = ledger.person_id
        and sends.claimed_at = ledger.claimed_at
    inner join sms_receipts
        on ledger.recipient_key_hash = sms_receipts.to_phone_hash
        and {{ within_window('sms_receipts.created_at', 'sends.claimed_at', cfg['esp_match_hours'], 'hour') }}
    where sends.channel = 'sms'

),

sms_matched as (

    {{ first_match('sms_candidates', 'send_key', 'reported_sent_at, report_id') }}

),

line_clicks as (

    select
        identities.person_id,
        web_events.event_id,
        web_events.event_at,
        {{ url_parameter('web_events.url', 'utm_campaign') }} as audience
    from web_events
    inner join identities
        on web_events.ec_customer_id = identities.source_id

),

line_candidates as (

    select
        sends.send_key,
        sends.campaign_key,
        sends.person_id,
        sends.channel,
        sends.sent_at,
        line_clicks.event_id as report_id,
        line_clicks.event_at as clicked_at
    from line_clicks
    inner join sends
        on line_clicks.person_id = sends.person_id
        and line_clicks.audience = sends.audience
        and {{ within_window('line_clicks.event_at', 'sends.sent_at', cfg['tracked_click_days'], 'day') }}
    where sends.channel = 'line'

),

-- Each click goes to the person's latest send it can follow.
line_matched as (

    {{ first_match('line_candidates', 'report_id', 'sent_at desc, send_key asc', 'nth_send') }}

),

-- Each send's first click: a person's first, a link scanner's only when there is none.
line_first_clicks as (

    {{ first_match('line_matched', 'send_key', scanner_last ~ ', clicked_at, report_id', 'nth_click') }}

),

events as (

    {% for event_type, at, condition in [
        ('delivery', 'reported_sent_at', 'is_delivered'),
        ('bounce', 'reported_sent_at', 'not is_delivered'),
        ('open', 'opened_at', 'opened_at is not null'),
        ('click', 'clicked_at', 'clicked_at is not null'),
        ('unsubscribe', 'unsubscribed_at', 'unsubscribed_at is not null'),
    ] %}
    select
        send_key,
        campaign_key,
        person_id,
        channel,
        report_id,
        '{{ event_type }}' as event_type,
        {{ at }} as event_at,
        {{ dbt.datediff('reported_sent_at', at, 'second') }}
            as seconds_after_send
    from email_matched
    where {{ condition }}
    union all
    {% endfor %}

    select
        send_key,
        campaign_key,
        person_id,
        channel,
        report_id,
        case when is_delivered then 'delivery' else 'bounce' end as event_type,
        reported_sent_at as event_at,
        0 as seconds_after_send
    from sms_matched

    union all

    select
        send_key,
        campaign_key,
        person_id,
        channel,
        report_id,
        'click' as event_type,
        clicked_at as event_at,
        {{ dbt.datediff('sent_at', 'clicked_at', 'second') }}
            as seconds_after_send
    from line_first_clicks

),

final as (

    select
        {{ dbt.concat(["send_key", "'|'", "event_type"]) }} as event_key,
        send_key,
        campaign_key,
        person_id,
        channel,
        report_id,
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
