{# Dates of the segment marts. #}

{# The day the segment marts describe: var `as_of` (YYYY-MM-DD), else env YORISOI_AS_OF, else the
   run date. Recency and daily triggers count whole days before it. #}
{% macro as_of_date() -%}
    {%- set value = var('as_of', none) or env_var('YORISOI_AS_OF', '') -%}
    {%- if value -%}
        cast('{{ value }}' as date)
    {%- else -%}
        cast({{ dbt.current_timestamp() }} as date)
    {%- endif -%}
{%- endmacro %}

{# An absolute timestamp as the calendar date in the brand's local time zone (a purchase at
   23:30 UTC is the next day in Japan). #}
{% macro to_local_date(column) -%}
    {{ return(adapter.dispatch('to_local_date', 'yorisoi')(column)) }}
{%- endmacro %}

{% macro default__to_local_date(column) -%}
    cast(timezone('{{ var("local_time_zone") }}', {{ column }}) as date)
{%- endmacro %}

{% macro spark__to_local_date(column) -%}
    to_date(from_utc_timestamp({{ column }}, '{{ var("local_time_zone") }}'))
{%- endmacro %}

{# Whole days from `start_date` to `end_date` (dates). #}
{% macro days_between(start_date, end_date) -%}
    {{ dbt.datediff(start_date, end_date, 'day') | trim }}
{%- endmacro %}

{# The newest loaded_at already in an incremental model (rows matching `where`), or a day before
   any data when there is none yet, so an incremental run reads only what landed since. #}
{% macro loaded_since(relation, where='1 = 1') -%}
    coalesce(
        (select max(loaded_at) from {{ relation }} where {{ where }}),
        cast('1900-01-01 00:00:00' as timestamp)
    )
{%- endmacro %}

{# The date `days` days after `date_expr` (negative: before), as a date on every engine
   (dbt.dateadd gives a timestamp on DuckDB). #}
{% macro add_days(date_expr, days) -%}
    cast({{ dbt.dateadd('day', days, date_expr) }} as date)
{%- endmacro %}
