with

source as (

    select * from {{ source('pos', 'sales') }}

),

renamed as (

    select
        {{ dbt.concat(['receipt_no', "'-'", 'cast(line_no as ' ~ dbt.type_string() ~ ')']) }} as sale_line_id,
        receipt_no,
        line_no,
        store_code,
        store_name,
        case transaction_type when '売上' then 'sale' when '返品' then 'return' end as transaction_type,
        nullif(original_receipt_no, '') as original_receipt_no,
        nullif(card_no, '') as card_no,
        item_code,
        quantity,
        unit_price,
        list_price,
        amount,
        points_used,
        points_earned,
        {{ local_to_timestamp('sold_at') }} as sold_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
