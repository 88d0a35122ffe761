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
