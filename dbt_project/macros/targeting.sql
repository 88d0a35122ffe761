{# Sample sizes for the 4R Response check. #}

{# The standard normal quantile for the usual significance levels and powers. Jinja has no
   inverse normal and SQL engines differ in theirs, so the common values are tabled; another
   value is a compile error that says which ones are known. #}
{% macro normal_quantile(kind, value) -%}
    {%- set table = {
        'alpha': {0.01: 2.575829, 0.05: 1.959964, 0.1: 1.644854},
        'power': {0.8: 0.841621, 0.9: 1.281552, 0.95: 1.644854},
    }[kind] -%}
    {%- if value not in table -%}
        {{ exceptions.raise_compiler_error("targeting." ~ kind ~ " must be one of " ~ (table.keys() | list | sort | join(', ')) ~ ", not " ~ value) }}
    {%- endif -%}
    {{ return(table[value]) }}
{%- endmacro %}

{# Control-group size needed to detect a rise from `baseline` to baseline × (1 + lift) with a
   two-sided test of two proportions (Fleiss), when the treatment group is (1 - holdout) /
   holdout times the control group. A number, computed at compile time. #}
{% macro min_control_size(baseline, lift, holdout, alpha, power) -%}
    {%- set z_a = normal_quantile('alpha', alpha) -%}
    {%- set z_b = normal_quantile('power', power) -%}
    {%- set p1 = baseline -%}
    {%- set p2 = baseline * (1 + lift) -%}
    {%- set k = (1 - holdout) / holdout -%}
    {%- set p_bar = (p1 + k * p2) / (1 + k) -%}
    {%- set n = (z_a * (p_bar * (1 - p_bar) * (1 + 1 / k)) ** 0.5 + z_b * (p1 * (1 - p1) + p2 * (1 - p2) / k) ** 0.5) ** 2 / (p2 - p1) ** 2 -%}
    {{ return(n) }}
{%- endmacro %}
