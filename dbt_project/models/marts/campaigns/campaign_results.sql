{#- One row per campaign (audience run x destination) and arm (control, or the treatment's
    variant): sizes, delivery, engagement, causal outcomes and cost, with the conversion lift
    against control and its 95 % (Wald) interval. The readout's tests (always-valid intervals,
    CUPED, the sample-ratio check, the verdict) are yorisoi.outcomes; the sums of squares here
    let it run Welch's test on revenue without reading person rows. -#}
{%- set cfg = var('campaigns') %}
{%- set float = dbt.type_float() %}

with

sends as (

    select * from {{ ref('fct_campaign_sends') }}

),

outcomes as (

    select * from {{ ref('fct_campaign_causal_outcomes') }}

),

engagements as (

    select * from {{ ref('fct_campaign_engagements') }}

),

conversions as (

    select * from {{ ref('fct_campaign_conversions') }}

),

engaged as (

    select
        send_key,
        max(case when event_type in ('delivery', 'bounce') then 1 else 0 end) as has_receipt,
        max(case when event_type = 'delivery' then 1 else 0 end) as reported_delivered,
        max(case when event_type = 'bounce' then 1 else 0 end) as bounced,
        max(case when event_type = 'open' and counts_as_engagement then 1 else 0 end) as opened,
        max(case when is_machine_open then 1 else 0 end) as machine_opened,
        max(case when event_type = 'click' and counts_as_engagement then 1 else 0 end) as clicked,
        max(case when is_bot_click then 1 else 0 end) as bot_clicked,
        max(case when event_type = 'unsubscribe' then 1 else 0 end) as unsubscribed
    from engagements
    group by send_key

),

credited as (

    select
        send_key,
        count(*) as credited_orders,
        sum(credited_revenue) as credited_revenue
    from conversions
    group by send_key

),

per_send as (

    select
        sends.campaign_key,
        sends.audience,
        sends.run_id,
        sends.destination,
        sends.channel,
        sends.assigned_group,
        sends.variant,
        sends.assigned_at,
        sends.delivery_status,
        outcomes.converted,
        outcomes.revenue_in_window,
        outcomes.is_window_complete,
        case when sends.assigned_group = 'control' then 'control' else coalesce(sends.variant, 'treatment') end
            as arm,
        -- Delivered as the channel reported it (the email log, the SMS receipt); sent is
        -- delivered where the channel reports nothing (LINE, paper), and email without a log is not.
        case
            when engaged.has_receipt = 1 then engaged.reported_delivered
            when sends.channel = 'email' then 0
            when sends.delivery_status = 'sent' then 1
            else 0
        end as delivered,
        coalesce(engaged.bounced, 0) as bounced,
        coalesce(engaged.opened, 0) as opened,
        coalesce(engaged.machine_opened, 0) as machine_opened,
        coalesce(engaged.clicked, 0) as clicked,
        coalesce(engaged.bot_clicked, 0) as bot_clicked,
        coalesce(engaged.unsubscribed, 0) as unsubscribed,
        coalesce(credited.credited_orders, 0) as credited_orders,
        coalesce(credited.credited_revenue, 0) as credited_revenue
    from sends
    inner join outcomes
        on sends.send_key = outcomes.send_key
    left join engaged
        on sends.send_key = engaged.send_key
    left join credited
        on sends.send_key = credited.send_key

),

arms as (

    select
        campaign_key,
        audience,
        run_id,
        destination,
        channel,
        arm,
        min(assigned_group) as assigned_group,
        min(variant) as variant,
        min(assigned_at) as assigned_at,
        count(*) as people,
        sum(case when delivery_status = 'sent' then 1 else 0 end) as sends,
        sum(case when delivery_status = 'failed' then 1 else 0 end) as failed_sends,
        sum(case when delivery_status = 'not_sent' then 1 else 0 end) as not_sent,
        sum(delivered) as delivered,
        sum(bounced) as bounces,
        sum(opened) as opens,
        sum(machine_opened) as machine_opens,
        sum(clicked) as clicks,
        sum(bot_clicked) as bot_clicks,
        sum(unsubscribed) as unsubscribes,
        sum(case when converted then 1 else 0 end) as converters,
        sum(revenue_in_window) as revenue,
        sum(cast(revenue_in_window as {{ float }}) * revenue_in_window) as revenue_sum_squares,
        sum(credited_orders) as credited_orders,
        sum(credited_revenue) as credited_revenue,
        min(case when is_window_complete then 1 else 0 end) = 1 as is_window_complete
    from per_send
    group by campaign_key, audience, run_id, destination, channel, arm

),

rates as (

    select
        arms.*,
        cast(arms.delivered as {{ float }}) / nullif(arms.sends, 0) as delivery_rate,
        cast(arms.opens as {{ float }}) / nullif(arms.delivered, 0) as open_rate,
        cast(arms.clicks as {{ float }}) / nullif(arms.delivered, 0) as ctr,
        cast(arms.converters as {{ float }}) / arms.people as conversion_rate,
        cast(arms.revenue as {{ float }}) / arms.people as revenue_per_recipient,
        {{ channel_setting('cost_per_piece', 'arms.channel') }} * arms.sends as send_cost
    from arms

),

control as (

    select
        campaign_key,
        people as control_people,
        conversion_rate as control_conversion_rate,
        revenue_per_recipient as control_revenue_per_recipient
    from rates
    where arm = 'control'

),

final as (

    select
        rates.campaign_key,
        {{ dbt.concat(["rates.audience", "' / '", "rates.destination", "' / '",
            dbt.cast(to_local_date('rates.assigned_at'), dbt.type_string())]) }} as campaign,
        rates.audience,
        rates.run_id,
        rates.destination,
        rates.channel,
        rates.arm,
        rates.assigned_group,
        rates.variant,
        rates.assigned_at,
        rates.people,
        rates.sends,
        rates.failed_sends,
        rates.not_sent,
        rates.delivered,
        rates.delivery_rate,
        rates.bounces,
        rates.opens,
        rates.open_rate,
        rates.machine_opens,
        rates.clicks,
        rates.ctr,
        rates.bot_clicks,
        rates.unsubscribes,
        rates.converters,
        rates.conversion_rate,
        rates.revenue,
        rates.revenue_per_recipient,
        rates.revenue_sum_squares,
        rates.credited_orders,
        rates.credited_revenue,
        rates.send_cost,
        rates.send_cost / nullif(rates.credited_orders, 0) as cpo,
        rates.is_window_complete,
        control.control_people,
        control.control_conversion_rate,
        case when rates.arm != 'control' then rates.conversion_rate - control.control_conversion_rate end as lift,
        case when rates.arm != 'control' then
                rates.conversion_rate - control.control_conversion_rate
                - 1.959964 * sqrt(
                    rates.conversion_rate * (1 - rates.conversion_rate) / rates.people
                    + control.control_conversion_rate * (1 - control.control_conversion_rate) / control.control_people
                )
        end as lift_low,
        case when rates.arm != 'control' then
                rates.conversion_rate - control.control_conversion_rate
                + 1.959964 * sqrt(
                    rates.conversion_rate * (1 - rates.conversion_rate) / rates.people
                    + control.control_conversion_rate * (1 - control.control_conversion_rate) / control.control_people
                )
        end as lift_high,
        case when rates.arm != 'control' then
                (rates.revenue_per_recipient - control.control_revenue_per_recipient) * {{ cfg['gross_margin'] }}
                - rates.send_cost / nullif(rates.people, 0)
        end as incremental_profit_per_recipient
    from rates
    left join control
        on rates.campaign_key = control.campaign_key

)

select * from final
