{# Spark merges only into Delta / Iceberg / Hudi tables: with plain Parquet (var
   spark_file_format unset) the model is rebuilt in full there. `append_new_columns`: a table
   built before built_at existed gets the column, null on its old rows, which the data tests on
   untested rows then leave alone (they were tested when written). #}
{{
    config(
        materialized=('table' if target.type == 'spark' and not var('spark_file_format', none) else 'incremental'),
        file_format=(var('spark_file_format', none) if target.type == 'spark' else none),
        unique_key='order_line_key',
        incremental_strategy=('merge' if target.type == 'spark' else 'delete+insert'),
        on_schema_change='append_new_columns',
    )
}}
{# Every channel's order lines: what was bought, at what price against the list price. Store
   returns are not lines here: the returned receipt is marked on fct_orders.
   Incremental: a run reads only rows landed since the last one (loaded_at), so a daily run does
   not rewrite two years of lines; a re-landed line replaces its earlier version. built_at: the
   build that wrote the row, so the data tests read only rows no passing run has tested
   (macros/test_slices.sql). #}

with

shop_lines as (

    select * from {{ ref('stg_ecommerce__order_lines') }}
    {% if is_incremental() %}
    where loaded_at > {{ loaded_since(this, "source = 'ecommerce'") }}
    {% endif %}

),

oms_lines as (

    select * from {{ ref('stg_oms__order_lines') }}
    {% if is_incremental() %}
    where loaded_at > {{ loaded_since(this, "source = 'oms'") }}
    {% endif %}

),

store_lines as (

    select * from {{ ref('stg_pos__sales') }}
    where transaction_type = 'sale'
    {% if is_incremental() %}
        and loaded_at > {{ loaded_since(this, "source = 'pos'") }}
    {% endif %}

),

unioned as (

    select
        'ecommerce' as source,
        order_line_id,
        order_id,
        sku,
        quantity,
        unit_price,
        list_price,
        amount,
        loaded_at
    from shop_lines

    union all

    select
        'oms' as source,
        order_line_id,
        order_id,
        item_code as sku,
        quantity,
        unit_price,
        list_price,
        amount,
        loaded_at
    from oms_lines

    union all

    select
        'pos' as source,
        sale_line_id as order_line_id,
        receipt_no as order_id,
        item_code as sku,
        quantity,
        unit_price,
        list_price,
        amount,
        loaded_at
    from store_lines

),

final as (

    select
        {{ record_key_from_column('source', 'order_line_id') }} as order_line_key,
        {{ record_key_from_column('source', 'order_id') }} as order_key,
        source,
        sku,
        quantity,
        unit_price,
        list_price,
        amount,
        unit_price >= list_price as is_full_price,
        loaded_at,
        {{ built_at() }} as built_at
    from unioned

)

select * from final
