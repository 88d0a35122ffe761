{# Percentiles of a numeric column inside an aggregate query (group by). `fraction` is 0..1
   (0.5 = the median). Engine-specific, so dispatched: DuckDB (the default) interpolates between
   the two nearest values like Excel's PERCENTILE.INC; Spark uses percentile_approx, which returns
   an actual value of the column within 1/10000 of the rank (exact on small groups), without
   collecting each group's values in memory. #}
{% macro percentile(column, fraction) -%}
    {{ return(adapter.dispatch('percentile', 'yorisoi')(column, fraction)) }}
{%- endmacro %}

{% macro default__percentile(column, fraction) -%}
    quantile_cont({{ column }}, {{ fraction }})
{%- endmacro %}

{% macro spark__percentile(column, fraction) -%}
    percentile_approx({{ column }}, {{ fraction }})
{%- endmacro %}
