with

source as (

    select * from {{ source('oms', 'order_lines') }}

),

renamed as (

    select
        {{ dbt.concat(['order_id', "'-'", 'cast(line_no as ' ~ dbt.type_string() ~ ')']) }} as order_line_id,
        order_id,
        line_no,
        item_code,
        quantity,
        unit_price,
        list_price,
        amount,
        _loaded_at as loaded_at

    from source

)

select * from renamed
