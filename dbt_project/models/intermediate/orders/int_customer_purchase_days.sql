{# One row per person and purchase day (the local calendar day in the brand's time zone) with the
   day's counted orders and spend: the transactions of the CLV models (marts/segments/customer_clv),
   which count purchase days, as lifetimes and the BG/NBD literature do. Anonymous store receipts
   (no member card, so no person), cancelled or returned orders, test accounts and erased people
   (int_segmented_people) are left out. #}

with

segmented as (

    select * from {{ ref('int_segmented_people') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

counted as (

    select
        orders.person_id,
        {{ to_local_date('orders.ordered_at') }} as purchase_date,
        orders.total
    from orders
    inner join segmented
        on orders.person_id = segmented.person_id
    where orders.is_counted

),

final as (

    select
        person_id,
        purchase_date,
        count(*) as orders,
        cast(coalesce(sum(total), 0) as {{ dbt.type_bigint() }}) as spend
    from counted
    group by person_id, purchase_date

)

select * from final
