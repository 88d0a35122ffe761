{# One row per customer with what marketing asks about most: first and last purchase, recency,
   frequency and monetary (counted orders before the as-of day), channel mix, favourite category,
   taste and brand (CTB), full-price vs sale buying (PB), points, area, age and subscription.
   Test accounts and erased people are left out: they are never segmented. #}

{%- set vip = var('segments')['vip'] -%}
{%- set pb = var('segments')['price_buyer'] -%}

with

customers as (

    select dim_customers.* from {{ ref('dim_customers') }} as dim_customers
    inner join {{ ref('int_segmented_people') }} as segmented
        on dim_customers.person_id = segmented.person_id

),

orders as (

    select * from {{ ref('int_customer_orders_sequenced') }}

),

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

products as (

    select * from {{ ref('dim_products') }}

),

prefectures as (

    select * from {{ ref('prefectures') }}

),

subscriptions as (

    select * from {{ ref('stg_oms__subscriptions') }}

),

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

order_summary as (

    select
        person_id,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        count(*) as frequency,
        sum(total) as monetary,
        sum(case when channel_group = 'online' then 1 else 0 end) as online_orders,
        sum(case when channel_group = 'store' then 1 else 0 end) as store_orders
    from orders
    group by person_id

),

{# Points as the source systems keep them: granted and redeemed on every order, whatever became
   of it (they do not revoke points on a cancellation or a return). #}
points as (

    select
        person_id,
        sum(points_earned) as points_earned,
        sum(points_used) as points_used
    from {{ ref('fct_orders') }}
    where person_id is not null
        and {{ to_local_date('ordered_at') }} < {{ as_of_date() }}
    group by person_id

),

first_purchases as (

    select
        person_id,
        channel as first_channel
    from orders
    where purchase_number = 1

),

{# VIP entry: the first purchase at which any lifetime threshold is reached. #}
vip_entries as (

    select
        person_id,
        order_date as vip_entered_on,
        case
            when cumulative_spend >= {{ vip['min_spend'] }} then 'spend'
            when purchase_number >= {{ vip['min_orders'] }} then 'orders'
            else 'points'
        end as vip_reached_by,
        row_number() over (partition by person_id order by purchase_number) as entry_rank
    from orders
    where cumulative_spend >= {{ vip['min_spend'] }}
        or purchase_number >= {{ vip['min_orders'] }}
        or cumulative_points_earned >= {{ vip['min_points_earned'] }}

),

bought_lines as (

    select
        orders.person_id,
        order_lines.amount,
        order_lines.is_full_price,
        products.category,
        products.taste,
        products.brand
    from order_lines
    inner join orders
        on order_lines.order_key = orders.order_key
    left join products
        on order_lines.sku = products.sku

),

{# CTB: the category, taste and brand with the largest spend (ties: the first by name). #}
ctb_spend as (

    select
        person_id,
        'category' as axis,
        category as axis_value,
        sum(amount) as spend
    from bought_lines
    where category is not null
    group by person_id, category
    union all
    select
        person_id,
        'taste' as axis,
        taste as axis_value,
        sum(amount) as spend
    from bought_lines
    where taste is not null
    group by person_id, taste
    union all
    select
        person_id,
        'brand' as axis,
        brand as axis_value,
        sum(amount) as spend
    from bought_lines
    where brand is not null
    group by person_id, brand

),

ctb_ranked as (

    select
        person_id,
        axis,
        axis_value,
        row_number() over (partition by person_id, axis order by spend desc, axis_value asc) as spend_rank
    from ctb_spend

),

ctb as (

    select
        person_id,
        max(case when axis = 'category' then axis_value end) as favourite_category,
        max(case when axis = 'taste' then axis_value end) as favourite_taste,
        max(case when axis = 'brand' then axis_value end) as favourite_brand
    from ctb_ranked
    where spend_rank = 1
    group by person_id

),

price_mix as (

    select
        person_id,
        cast(sum(case when is_full_price then amount else 0 end) as double) / nullif(sum(amount), 0) as full_price_share
    from bought_lines
    group by person_id

),

subscription_status as (

    select
        person_ids.person_id,
        max(case when subscriptions.status = 'active' then 1 else 0 end) = 1 as has_active,
        sum(case when subscriptions.status = 'active' then 1 else 0 end) as active_subscriptions
    from subscriptions
    inner join person_ids
        on {{ record_key('oms', 'subscriptions.customer_id') }} = person_ids.record_key
    group by person_ids.person_id

),

joined as (

    select
        customers.person_id,
        order_summary.first_order_date,
        order_summary.last_order_date,
        {{ days_between('order_summary.last_order_date', as_of_date()) }} as recency_days,
        coalesce(order_summary.frequency, 0) as frequency,
        coalesce(order_summary.monetary, 0) as monetary,
        {{ days_between('order_summary.first_order_date', as_of_date()) }} as tenure_days,
        coalesce(order_summary.online_orders, 0) as online_orders,
        coalesce(order_summary.store_orders, 0) as store_orders,
        first_purchases.first_channel,
        ctb.favourite_category,
        ctb.favourite_taste,
        ctb.favourite_brand,
        price_mix.full_price_share,
        coalesce(points.points_earned, 0) as points_earned,
        coalesce(points.points_used, 0) as points_used,
        vip_entries.vip_entered_on,
        vip_entries.vip_reached_by,
        customers.prefecture,
        prefectures.region,
        customers.birth_date,
        customers.gender,
        subscription_status.has_active,
        subscription_status.active_subscriptions
    from customers
    left join order_summary
        on customers.person_id = order_summary.person_id
    left join points
        on customers.person_id = points.person_id
    left join first_purchases
        on customers.person_id = first_purchases.person_id
    left join ctb
        on customers.person_id = ctb.person_id
    left join price_mix
        on customers.person_id = price_mix.person_id
    left join vip_entries
        on customers.person_id = vip_entries.person_id
        and vip_entries.entry_rank = 1
    left join prefectures
        on customers.prefecture = prefectures.prefecture
    left join subscription_status
        on customers.person_id = subscription_status.person_id

),

final as (

    select
        person_id,
        first_order_date,
        last_order_date,
        recency_days,
        frequency,
        monetary,
        case when frequency > 0 then cast(monetary as double) / frequency end as aov,
        tenure_days,
        online_orders,
        store_orders,
        case
            when frequency = 0 then 'none'
            when store_orders = 0 then 'online_only'
            when online_orders = 0 then 'store_only'
            else 'omnichannel'
        end as channel_mix,
        first_channel,
        favourite_category,
        favourite_taste,
        favourite_brand,
        full_price_share,
        1 - full_price_share as sale_share,
        case
            when full_price_share is null then null
            when full_price_share >= {{ pb['full_price_min_share'] }} then 'full_price'
            when 1 - full_price_share >= {{ pb['sale_min_share'] }} then 'sale'
            else 'mixed'
        end as price_buyer,
        points_earned,
        points_used,
        points_earned - points_used as points_balance,
        case
            when points_earned - points_used > 0
                then {{ add_days('last_order_date', var('segments')['points_expire_after_days']) }}
        end as points_expire_on,
        vip_entered_on,
        vip_reached_by,
        prefecture,
        region,
        case
            when birth_date is not null then
                cast(
                    extract(year from {{ as_of_date() }}) - extract(year from birth_date)
                    - case
                        when extract(month from {{ as_of_date() }}) * 100 + extract(day from {{ as_of_date() }})
                            < extract(month from birth_date) * 100 + extract(day from birth_date) then 1
                        else 0
                    end as {{ dbt.type_int() }}
                )
        end as age,
        cast(extract(month from birth_date) as {{ dbt.type_int() }}) as birth_month,
        gender,
        case
            when has_active then 'active'
            when has_active is not null then 'cancelled'
            else 'none'
        end as subscription_status,
        coalesce(active_subscriptions, 0) as active_subscriptions,
        {{ as_of_date() }} as as_of_date
    from joined

)

select
    final.*,
    case
        when final.age is null then 'unknown'
        when final.age < 20 then 'under 20'
        when final.age >= 70 then '70+'
        else {{ dbt.concat([
            'cast(cast(floor(final.age / 10) * 10 as ' ~ dbt.type_int() ~ ') as ' ~ dbt.type_string() ~ ')',
            "'s'",
        ]) }}
    end as age_band
from final
