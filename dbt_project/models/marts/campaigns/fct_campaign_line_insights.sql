{#- LINE's own statistics per message, which have no person grain: one row per custom
    aggregation unit and JST day of sending, with the LINE sends Yorisoi made that day for the
    audience of that unit (the LINE multicast destination names the unit after the audience,
    macro line_aggregation_unit: the name itself when it fits LINE's 30 characters, else a prefix
    and a short hash; an audience that sets its own unit is not joined), so impressions and clicks
    read as rates. Counts LINE withholds (under 20 people) stay null. -#}
{%- set float = dbt.type_float() %}

with

insights as (

    select * from {{ ref('stg_line_insight__unit_insights') }}

),

link_clicks as (

    select * from {{ ref('stg_line_insight__link_clicks') }}

),

sends as (

    select * from {{ ref('fct_campaign_sends') }}
    where channel = 'line' and delivery_status = 'sent'

),

line_sends as (

    select
        audience,
        {{ line_aggregation_unit('audience') }} as aggregation_unit,
        {{ to_local_date('sent_at') }} as sent_on,
        campaign_key
    from sends

),

sends_per_day as (

    select
        audience,
        aggregation_unit,
        sent_on,
        count(*) as line_sends,
        count(distinct campaign_key) as campaigns
    from line_sends
    group by audience, aggregation_unit, sent_on

),

clicks_per_day as (

    select
        aggregation_unit,
        sent_on,
        sum(clicks) as link_clicks,
        count(*) as urls
    from link_clicks
    group by aggregation_unit, sent_on

),

final as (

    select
        {{ dbt.concat(["insights.aggregation_unit", "'|'", dbt.cast("insights.sent_on", dbt.type_string())]) }}
            as insight_key,
        insights.aggregation_unit,
        insights.sent_on,
        sends_per_day.audience,
        coalesce(sends_per_day.line_sends, 0) as line_sends,
        coalesce(sends_per_day.campaigns, 0) as campaigns,
        insights.unique_impressions,
        insights.impressions,
        insights.unique_clicks,
        clicks_per_day.link_clicks,
        coalesce(clicks_per_day.urls, 0) as urls,
        cast(insights.unique_impressions as {{ float }}) / nullif(sends_per_day.line_sends, 0) as open_rate,
        cast(insights.unique_clicks as {{ float }}) / nullif(sends_per_day.line_sends, 0) as click_rate,
        insights.fetched_at
    from insights
    left join sends_per_day
        on insights.aggregation_unit = sends_per_day.aggregation_unit
        and insights.sent_on = sends_per_day.sent_on
    left join clicks_per_day
        on insights.aggregation_unit = clicks_per_day.aggregation_unit
        and insights.sent_on = clicks_per_day.sent_on

)

select * from final
