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

{# The hour (0-23) and ISO weekday (1 = Monday) of an absolute timestamp in the brand's local time. #}
{% macro local_hour(column) -%}
    {{ return(adapter.dispatch('local_hour', 'yorisoi')(column)) }}
{%- endmacro %}

{% macro default__local_hour(column) -%}
    hour(timezone('{{ var("local_time_zone") }}', {{ column }}))
{%- endmacro %}

{% macro spark__local_hour(column) -%}
    hour(from_utc_timestamp({{ column }}, '{{ var("local_time_zone") }}'))
{%- endmacro %}

{% macro local_isodow(column) -%}
    {{ return(adapter.dispatch('local_isodow', 'yorisoi')(column)) }}
{%- endmacro %}

{% macro default__local_isodow(column) -%}
    isodow(timezone('{{ var("local_time_zone") }}', {{ column }}))
{%- endmacro %}

{% macro spark__local_isodow(column) -%}
    ((dayofweek(from_utc_timestamp({{ column }}, '{{ var("local_time_zone") }}')) + 5) % 7 + 1)
{%- endmacro %}

{# The LINE custom aggregation unit an audience's multicasts are counted under, as the LINE
   destination names it (yorisoi.activation.delivery.destinations.line.aggregation_unit): the
   audience's name when it fits LINE's 30 characters, else its first 21 characters, '_' and the
   first 8 hex digits of its MD5 (two audiences sharing their first 30 characters stay apart). #}
{% macro line_aggregation_unit(audience) -%}
    case
        when {{ dbt.length(audience) }} <= 30 then {{ audience }}
        else {{ dbt.concat([
            'substring(' ~ audience ~ ', 1, 21)', "'_'", 'substring(' ~ dbt.hash(audience) ~ ', 1, 8)'
        ]) }}
    end
{%- endmacro %}
