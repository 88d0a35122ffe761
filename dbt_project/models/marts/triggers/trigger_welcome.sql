{# ウェルカム (welcome / first-purchase follow-up): customers whose first purchase (the first
   counted order on any channel, purchase_number = 1) was on the lookback days (var
   triggers.lookback_days). triggered_on is the local day of that first purchase. #}

{%- set lookback_days = var('triggers')['lookback_days'] -%}

with

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}
    where purchase_number = 1

),

traits as (

    select * from {{ ref('customer_traits') }}

),

final as (

    select
        orders.person_id,
        'welcome' as trigger,
        orders.order_date as triggered_on,
        {{ as_of_date() }} as as_of_date,
        orders.order_key as first_order_key,
        orders.channel as first_channel,
        orders.channel_group as first_channel_group,
        orders.total as first_order_total,
        traits.favourite_category,
        traits.frequency
    from orders
    inner join traits
        on orders.person_id = traits.person_id
    where orders.order_date >= {{ add_days(as_of_date(), -lookback_days) }}
        and orders.order_date < {{ as_of_date() }}

)

select * from final
