{# A source table that may not exist yet: the activation store's tables land after the first
   send (ingest_activation), and a brand that has not sent anything still builds its campaign
   models, empty. The relation when it exists; else a select of no rows with the columns' types
   (`columns`: name -> type, a dbt.type_* macro's output). #}
{% macro source_or_empty(source_name, table_name, columns) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- if execute and adapter.get_relation(
        database=relation.database, schema=relation.schema, identifier=relation.identifier) is none -%}
        (select
        {%- for name, type in columns.items() %} cast(null as {{ type }}) as {{ adapter.quote(name) }}{{ "," if not loop.last }}{% endfor %}
        where 1 = 0) as empty_source
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}

{# An absolute timestamp's type: DuckDB's timestamptz, Spark's timestamp (always absolute). #}
{% macro type_timestamp_tz() -%}
    {{ return(adapter.dispatch('type_timestamp_tz', 'yorisoi')()) }}
{%- endmacro %}

{% macro default__type_timestamp_tz() -%} timestamp with time zone {%- endmacro %}

{% macro spark__type_timestamp_tz() -%} timestamp {%- endmacro %}

{# A per-channel setting of var('campaigns') (a mapping with a `default`) as a SQL expression on
   `channel_column`. #}
{% macro channel_setting(name, channel_column) -%}
    {%- set values = var('campaigns')[name] -%}
    case {{ channel_column }}
        {%- for channel, value in values.items() if channel != 'default' %}
            when '{{ channel }}' then {{ value }}
        {%- endfor %}
        else {{ values['default'] }}
    end
{%- endmacro %}
