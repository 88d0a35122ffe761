{# Each person's counted orders (not cancelled, not returned) before the as-of day, in purchase
   order: the n-th purchase (F), the days since the previous one, the day of the next one, and
   running totals, all in one pass over the orders, so the marts on top need no window of their
   own over every order. The base of traits, F-retention, cohorts and VIP entry. Several orders on
   one day are several purchases, as 通販 counts them. Only the segmented population
   (int_segmented_people): every mart built on this counts the same people as customer_traits. #}

with

segmented as (

    select * from {{ ref('int_segmented_people') }}

),

orders as (

    select fct_orders.* from {{ ref('fct_orders') }} as fct_orders
    inner join segmented
        on fct_orders.person_id = segmented.person_id
    where fct_orders.is_counted

),

dated as (

    select
        person_id,
        order_key,
        source,
        channel,
        case when channel = 'store' then 'store' else 'online' end as channel_group,
        ordered_at,
        {{ to_local_date('ordered_at') }} as order_date,
        total,
        points_earned,
        points_used
    from orders

),

before_as_of as (

    select * from dated
    where order_date < {{ as_of_date() }}

),

sequenced as (

    select
        person_id,
        order_key,
        source,
        channel,
        channel_group,
        ordered_at,
        order_date,
        total,
        points_earned,
        points_used,
        row_number() over (partition by person_id order by ordered_at, order_key) as purchase_number,
        lag(order_date) over (partition by person_id order by ordered_at, order_key) as previous_order_date,
        lead(order_date) over (partition by person_id order by ordered_at, order_key) as next_order_date,
        sum(total) over (
            partition by person_id order by ordered_at, order_key
            rows between unbounded preceding and current row
        ) as cumulative_spend,
        sum(points_earned) over (
            partition by person_id order by ordered_at, order_key
            rows between unbounded preceding and current row
        ) as cumulative_points_earned
    from before_as_of

),

final as (

    select
        sequenced.*,
        {{ days_between('previous_order_date', 'order_date') }} as days_since_previous
    from sequenced

)

select * from final
