{# Store receipts as orders: one row per sales receipt. A return is its own receipt pointing at
   the original, which is then marked returned. `loaded_at` is when the receipt last changed
   (its newest line or a later return), which fct_orders' incremental load reads. #}

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
        sum(amount) - sum(points_used) as total,
        max(loaded_at) as loaded_at
    from sales
    where transaction_type = 'sale'
    group by receipt_no

),

returns as (

    select
        original_receipt_no as receipt_no,
        max(loaded_at) as loaded_at
    from sales
    where transaction_type = 'return'
    group by original_receipt_no

),

final as (

    select
        receipts.receipt_no,
        receipts.card_no,
        receipts.store_code,
        receipts.ordered_at,
        receipts.subtotal,
        receipts.discount,
        receipts.points_used,
        receipts.points_earned,
        receipts.total,
        case when returns.receipt_no is not null then 'returned' else 'completed' end as status,
        case
            when returns.loaded_at > receipts.loaded_at then returns.loaded_at
            else receipts.loaded_at
        end as loaded_at
    from receipts
    left join returns
        on receipts.receipt_no = returns.receipt_no

)

select * from final
