{# Each customer's status and RFM cell as every segment build published them, one row per
   customer and as-of day: the marts hold only today's state, so this is what the migration
   between two dates (ランク推移) reads. A rebuild for a day replaces that day's rows (rerun-safe;
   a build for an earlier day adds that day). full_refresh=false: the history cannot be
   rebuilt from the sources, a --full-refresh must not drop it.
   Retention (var segment_history): every day is kept for keep_daily_days, older days only on the
   first as-of day of each month. Erased people's rows are deleted from every day. #}

{%- set spark_parquet = target.type == 'spark' and not var('spark_file_format', none) -%}
{#- Spark merges and deletes only in Delta / Iceberg / Hudi tables: with plain Parquet (var
    spark_file_format unset) a day is one partition, replaced by insert_overwrite, and the
    retention and erasure deletes cannot run there (set spark_file_format to delta for them). -#}
{{
    config(
        materialized='incremental',
        incremental_strategy=(
            'insert_overwrite' if spark_parquet else 'merge' if target.type == 'spark' else 'delete+insert'
        ),
        partition_by=(['as_of_date'] if spark_parquet else none),
        file_format=((var('spark_file_format', none) or 'parquet') if target.type == 'spark' else none),
        unique_key=['as_of_date', 'person_id'],
        full_refresh=false,
        on_schema_change='fail',
        post_hook=([] if spark_parquet else [
            "delete from {{ this }} where person_id in
                (select person_id from {{ ref('dim_customers') }} where is_erased)",
            "delete from {{ this }}
                where as_of_date < {{ add_days(as_of_date(), -var('segment_history', {}).get('keep_daily_days', 62)) }}
                and as_of_date not in
                    (select min(as_of_date) from {{ this }} group by {{ dbt.date_trunc('month', 'as_of_date') }})",
        ]),
    )
}}

-- depends_on: {{ ref('dim_customers') }}

with

statuses as (

    select * from {{ ref('customer_status') }}

),

rfm as (

    select * from {{ ref('customer_rfm') }}

),

final as (

    select
        statuses.as_of_date,
        statuses.person_id,
        statuses.status,
        rfm.rfm_segment,
        rfm.rfm_cell,
        rfm.r_score,
        rfm.f_score,
        rfm.m_score,
        rfm.fm_score
    from statuses
    left join rfm
        on statuses.person_id = rfm.person_id

)

select * from final
