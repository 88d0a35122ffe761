{#- The causal view: one row per campaign send row (treatment and control alike), with what the
    person did from assignment on, whether or not they opened or clicked anything, and the
    pre-period covariates CUPED uses. Lift is treatment minus control on these columns.
    定期 retention: a subscriber at assignment had a subscription delivery in the
    `subscription_cycle_days` before it; they are kept at 90 (180) days when a subscription
    delivery came in the `subscription_cycle_days` ending there. -#}
{%- set pre_days = var('campaigns')['pre_period_days'] %}
{%- set cycle = var('campaigns')['subscription_cycle_days'] %}

with

sends as (

    select * from {{ ref('fct_campaign_sends') }}

),

orders as (

    select * from {{ ref('fct_orders') }}
    where is_counted and person_id is not null

),

windows as (

    select
        sends.*,
        {{ channel_setting('outcome_window_days', 'sends.channel') }} as outcome_window_days
    from sends

),

joined as (

    select
        windows.send_key,
        windows.outcome_window_days,
        windows.assigned_at,
        orders.order_key,
        orders.ordered_at,
        orders.total,
        orders.is_subscription,
        orders.ordered_at >= windows.assigned_at as is_after
    from windows
    inner join orders
        on windows.person_id = orders.person_id

),

per_send as (

    select
        send_key,
        sum(case when is_after and ordered_at < {{ dbt.dateadd('day', 'outcome_window_days', 'assigned_at') }}
                then 1
            else 0
        end) as orders_in_window,
        sum(case when is_after and ordered_at < {{ dbt.dateadd('day', 'outcome_window_days', 'assigned_at') }}
                then total
            else 0
        end) as revenue_in_window,
        sum(case when is_after and ordered_at < {{ dbt.dateadd('day', 90, 'assigned_at') }}
                then 1
            else 0
        end) as orders_within_90d,
        sum(case when is_after and ordered_at < {{ dbt.dateadd('day', 180, 'assigned_at') }}
                then 1
            else 0
        end) as orders_within_180d,
        sum(case when is_after and ordered_at < {{ dbt.dateadd('day', 365, 'assigned_at') }}
                then total
            else 0
        end) as revenue_within_365d,
        sum(case when not is_after then 1 else 0 end) as orders_before,
        sum(case when not is_after and ordered_at >= {{ dbt.dateadd('day', -pre_days, 'assigned_at') }}
                then 1
            else 0
        end) as pre_period_orders,
        sum(case when not is_after and ordered_at >= {{ dbt.dateadd('day', -pre_days, 'assigned_at') }}
                then total
            else 0
        end) as pre_period_revenue,
        max(case when not is_after then ordered_at end) as last_order_before,
        max(case when not is_after and is_subscription
                and ordered_at >= {{ dbt.dateadd('day', -cycle, 'assigned_at') }}
                then 1
            else 0
        end) as subscribed_before,
        max(case when is_after and is_subscription
                and ordered_at >= {{ dbt.dateadd('day', 90 - cycle, 'assigned_at') }}
                and ordered_at < {{ dbt.dateadd('day', 90, 'assigned_at') }}
                then 1
            else 0
        end) as subscription_delivery_90d,
        max(case when is_after and is_subscription
                and ordered_at >= {{ dbt.dateadd('day', 180 - cycle, 'assigned_at') }}
                and ordered_at < {{ dbt.dateadd('day', 180, 'assigned_at') }}
                then 1
            else 0
        end) as subscription_delivery_180d
    from joined
    group by send_key

),

final as (

    select
        windows.send_key,
        windows.campaign_key,
        windows.audience,
        windows.run_id,
        windows.destination,
        windows.channel,
        windows.person_id,
        windows.assigned_group,
        windows.variant,
        windows.assigned_at,
        windows.outcome_window_days,
        {{ to_local_date(dbt.dateadd('day', 'windows.outcome_window_days', 'windows.assigned_at')) }}
        <= {{ as_of_date() }} as is_window_complete,
        coalesce(per_send.orders_in_window, 0) as orders_in_window,
        coalesce(per_send.orders_in_window, 0) > 0 as converted,
        coalesce(per_send.revenue_in_window, 0) as revenue_in_window,
        coalesce(per_send.orders_before, 0) = 1 as is_f1_at_assignment,
        case when coalesce(per_send.orders_before, 0) = 1 then per_send.orders_within_90d > 0 end
            as f2_within_90d,
        case when coalesce(per_send.orders_before, 0) = 1 then per_send.orders_within_180d > 0 end
            as f2_within_180d,
        coalesce(per_send.subscribed_before, 0) = 1 as is_subscriber_at_assignment,
        case when coalesce(per_send.subscribed_before, 0) = 1 then per_send.subscription_delivery_90d = 1 end
            as subscription_kept_90d,
        case when coalesce(per_send.subscribed_before, 0) = 1 then per_send.subscription_delivery_180d = 1 end
            as subscription_kept_180d,
        coalesce(per_send.revenue_within_365d, 0) as revenue_within_365d,
        {{ to_local_date(dbt.dateadd('day', 365, 'windows.assigned_at')) }} <= {{ as_of_date() }}
            as is_365d_complete,
        coalesce(per_send.pre_period_orders, 0) as pre_period_orders,
        coalesce(per_send.pre_period_revenue, 0) as pre_period_revenue,
        {{ days_between(to_local_date('per_send.last_order_before'), to_local_date('windows.assigned_at')) }}
            as days_since_last_order
    from windows
    left join per_send
        on windows.send_key = per_send.send_key

)

select * from final
