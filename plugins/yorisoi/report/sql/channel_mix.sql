-- Customers who bought, by where they buy.
select
    channel_mix,
    count(*) as customers,
    sum(monetary) as monetary
from marts.customer_traits
where frequency > 0
group by channel_mix
order by customers desc
