{# Percentiles of a numeric column inside an aggregate query (group by). `fraction` is 0..1
   (0.5 = the median). Interpolated between the two nearest values like Excel's PERCENTILE.INC on
   every engine (the unit test f_lead_time_summary_groups_five_and_more pins it), but spelled
   differently, so dispatched: DuckDB's quantile_cont, Spark's exact percentile (not
   percentile_approx, which returns an actual value of the column and so differs from DuckDB's
   interpolated answer). Spark's percentile collects each group's values, which is fine for the
   few groups it is used on. #}
{% macro percentile(column, fraction) -%}
    {{ return(adapter.dispatch('percentile', 'yorisoi')(column, fraction)) }}
{%- endmacro %}

{% macro default__percentile(column, fraction) -%}
    quantile_cont({{ column }}, {{ fraction }})
{%- endmacro %}

{% macro spark__percentile(column, fraction) -%}
    percentile({{ column }}, {{ fraction }})
{%- endmacro %}
