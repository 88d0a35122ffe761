-- Revenue of identified customers in the decile period (the last 365 days) by order channel.
select
    orders.channel,
    count(*) as orders,
    sum(orders.total) as revenue
from marts.fct_orders as orders
where orders.is_counted
    and orders.person_id is not null
    and cast(timezone($time_zone, orders.ordered_at) as date)
        >= (select min(period_start) from marts.customer_deciles)
    and cast(timezone($time_zone, orders.ordered_at) as date)
        < (select max(as_of_date) from marts.customer_status)
group by orders.channel
order by revenue desc
