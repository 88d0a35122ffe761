{# Schemas are named by layer (staging, intermediate, marts, ...), not prefixed with the
   target schema: the names people query are the names in the folder tree. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
