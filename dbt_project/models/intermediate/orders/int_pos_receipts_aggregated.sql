{# Store receipts as orders: one row per sales receipt. A return is its own receipt pointing at
   the original, which is then marked returned. #}

with

sales as (

    select * from {{ ref('stg_pos__sales') }}

),

receipts as (

    select
        receipt_no,
        max(card_no) as card_no,
        max(store_code) as store_code,
        min(sold_at) as ordered_at,
        sum(quantity * list_price) as subtotal,
        sum(quantity * list_price) - sum(amount) as discount,
        sum(points_used) as points_used,
        sum(points_earned) as points_earned,
        sum(amount) - sum(points_used) as total
    from sales
    where transaction_type = 'sale'
    group by receipt_no

),

returns as (

    select distinct original_receipt_no as receipt_no
    from sales
    where transaction_type = 'return'

),

final as (

    select
        receipts.*,
        case when returns.receipt_no is not null then 'returned' else 'completed' end as status
    from receipts
    left join returns
        on receipts.receipt_no = returns.receipt_no

)

select * from final
