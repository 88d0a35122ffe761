{#- The last-touch credit view: one row per order credited to a campaign send. First, an order
    quoting the coupon code printed on an audience's DM or 同梱物 (seed campaign_coupon_codes) is
    credited to the person's latest send of that audience before it, within `coupon_valid_days`,
    whatever else touched them. Otherwise a touch is a counted click (email, LINE) or a delivery
    (SMS, LINE, DM, 同梱物); an order placed within the channel's `credit_window_hours` after a
    touch is credited to the latest such touch. One order is credited to at most one send. Credit
    is not lift: the causal view is fct_campaign_causal_outcomes. -#}
{%- set cfg = var('campaigns') %}

with

sends as (

    select * from {{ ref('fct_campaign_sends') }}

),

engagements as (

    select * from {{ ref('fct_campaign_engagements') }}

),

orders as (

    select * from {{ ref('fct_orders') }}
    where is_counted and person_id is not null

),

coupon_codes as (

    select * from {{ ref('campaign_coupon_codes') }}

),

touches as (

    select
        send_key,
        campaign_key,
        person_id,
        channel,
        'click' as touch,
        event_at as touched_at
    from engagements
    where event_type = 'click' and counts_as_engagement

    union all

    select
        send_key,
        campaign_key,
        person_id,
        channel,
        'delivery' as touch,
        sent_at as touched_at
    from sends
    where delivery_status = 'sent' and channel in ('sms', 'line', 'dm', 'insert')

),

windowed as (

    select
        touches.*,
        {{ channel_setting('credit_window_hours', 'touches.channel') }} as credit_window_hours
    from touches

),

coupon_sends as (

    select
        sends.send_key,
        sends.campaign_key,
        sends.person_id,
        sends.channel,
        sends.sent_at,
        upper(trim(coupon_codes.coupon_code)) as coupon_code
    from sends
    inner join coupon_codes
        on sends.audience = coupon_codes.audience
    where sends.delivery_status = 'sent'

),

-- Window candidates rank after every coupon candidate of the same order.
candidates as (

    select
        orders.order_key,
        orders.person_id,
        orders.ordered_at,
        orders.total,
        coupon_sends.send_key,
        coupon_sends.campaign_key,
        coupon_sends.channel,
        'coupon' as touch,
        coupon_sends.sent_at as touched_at,
        {{ cfg['coupon_valid_days'] }} * 24 as credit_window_hours,
        'coupon_code' as credit_rule,
        0 as rule_rank
    from orders
    inner join coupon_sends
        on orders.person_id = coupon_sends.person_id
        and orders.coupon_code = coupon_sends.coupon_code
        and {{ within_window('orders.ordered_at', 'coupon_sends.sent_at', cfg['coupon_valid_days'], 'day') }}

    union all

    select
        orders.order_key,
        orders.person_id,
        orders.ordered_at,
        orders.total,
        windowed.send_key,
        windowed.campaign_key,
        windowed.channel,
        windowed.touch,
        windowed.touched_at,
        windowed.credit_window_hours,
        'last_touch' as credit_rule,
        1 as rule_rank
    from orders
    inner join windowed
        on orders.person_id = windowed.person_id
        and {{ within_window('orders.ordered_at', 'windowed.touched_at', 'windowed.credit_window_hours', 'hour') }}

),

-- Each order's credit: a coupon first, then the latest touch.
ranked as (

    {{ first_match('candidates', 'order_key', 'rule_rank asc, touched_at desc, send_key asc', 'nth_touch') }}

),

final as (

    select
        order_key,
        send_key,
        campaign_key,
        person_id,
        channel,
        touch,
        touched_at,
        ordered_at,
        total as credited_revenue,
        credit_window_hours,
        credit_rule
    from ranked

)

select * from final
