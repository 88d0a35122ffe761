{#- The last-touch credit view: one row per order credited to a campaign send. A touch is a
    counted click (email) or a delivery (SMS, LINE, DM, 同梱物); an order placed within the
    channel's `credit_window_hours` after a touch is credited to the latest such touch, so one
    order is credited to at most one send. Credit is not lift: the causal view is
    fct_campaign_causal_outcomes. -#}

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

candidates as (

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
        row_number() over (
            partition by orders.order_key order by windowed.touched_at desc, windowed.send_key asc
        ) as nth_touch
    from orders
    inner join windowed
        on orders.person_id = windowed.person_id
        and orders.ordered_at >= windowed.touched_at
        and orders.ordered_at < {{ dbt.dateadd('hour', 'windowed.credit_window_hours', 'windowed.touched_at') }}

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
        'last_touch' as credit_rule
    from candidates
    where nth_touch = 1

)

select * from final
