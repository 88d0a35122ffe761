{# Every daily trigger audience in one table, one row per trigger and person: what the
   activation layer reads. Details for each message are in the trigger_* model of the same
   name. #}

{%- set triggers = [
    'cart_abandonment',
    'browse_abandonment',
    'vip_reached',
    'birthday_this_month',
    'welcome',
    'second_purchase_nudge',
    'dormant_winback',
    'points_expiring',
    'cross_promotion',
] -%}

with

{% for name in triggers %}
{{ name }} as (

    select * from {{ ref('trigger_' ~ name) }}

),

{% endfor %}
unioned as (

    {%- for name in triggers %}
    select
        trigger,
        person_id,
        triggered_on,
        as_of_date
    from {{ name }}
    {%- if not loop.last %}

    union all
    {% endif -%}
    {% endfor %}

)

select * from unioned
