{#- LINE's own statistics per message, which have no person grain: one row per custom
    aggregation unit and JST day of sending, with the LINE sends Yorisoi made that day for the
    audience of that name (the LINE multicast destination uses the audience's name as its unit
    unless an audience sets another), so impressions and clicks read as rates. Counts LINE
    withholds (under 20 people) stay null. -#}
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

sends_per_day as (

    select
        audience,
        substring(audience, 1, 30) as aggregation_unit,  -- LINE's units are at most 30 characters
        {{ to_local_date('sent_at') }} as sent_on,
        count(*) as line_sends,
        count(distinct campaign_key) as campaigns
    from sends
    group by audience, substring(audience, 1, 30), {{ to_local_date('sent_at') }}

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
