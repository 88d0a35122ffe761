{#- The web events of known people on the triggers' lookback days: the shop's events of the given
    types, joined to the person through the identity bridge, kept only for people in
    customer_traits, on the local days from var triggers.lookback_days before the as-of day up to
    the day before it. One row per event: person_id, event_id, event_type, product_id, event_at,
    event_date (local). Shared by the cart and browse abandonment triggers. -#}
{% macro recent_person_web_events(event_types) -%}
    {%- set lookback_days = var('triggers')['lookback_days'] -%}
    select
        traits.person_id,
        events.event_id,
        events.event_type,
        events.product_id,
        events.event_at,
        {{ to_local_date('events.event_at') }} as event_date
    from {{ ref('stg_web__events') }} as events
    inner join {{ ref('bridge_customer_identities') }} as identities
        on {{ record_key('ecommerce', 'events.ec_customer_id') }} = identities.record_key
        and identities.source = 'ecommerce'
    inner join {{ ref('customer_traits') }} as traits
        on identities.person_id = traits.person_id
    where events.event_type in ({% for t in event_types %}'{{ t }}'{{ ", " if not loop.last }}{% endfor %})
        and {{ to_local_date('events.event_at') }} >= {{ add_days(as_of_date(), -lookback_days) }}
        and {{ to_local_date('events.event_at') }} < {{ as_of_date() }}
{%- endmacro %}
