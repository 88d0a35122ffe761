{# ポイント失効 (points expiring): customers holding at least var
   triggers.points_expiring_min_balance points that expire within the next var
   triggers.points_expiring_within_days days (as-of day <= points_expire_on < as-of day + N).
   Points expire var segments.points_expire_after_days days after the last purchase, so a new
   purchase takes a customer out. triggered_on is the first day the expiry came within the N
   days (points_expire_on - N + 1): the same on every daily run until it expires. #}

{%- set within_days = var('triggers')['points_expiring_within_days'] -%}
{%- set min_balance = var('triggers')['points_expiring_min_balance'] -%}

with

traits as (

    select * from {{ ref('customer_traits') }}

),

final as (

    select
        person_id,
        'points_expiring' as trigger,
        {{ add_days('points_expire_on', 1 - within_days) }} as triggered_on,
        {{ as_of_date() }} as as_of_date,
        points_balance,
        points_expire_on,
        {{ days_between(as_of_date(), 'points_expire_on') }} as days_to_expiry,
        last_order_date,
        frequency
    from traits
    where points_balance >= {{ min_balance }}
        and points_expire_on >= {{ as_of_date() }}
        and points_expire_on < {{ add_days(as_of_date(), within_days) }}

)

select * from final
