{# How many candidate readings of a kanji name the records keep (reading_key_1 ..): the
   MAX_READINGS of yorisoi.privacy.readings. #}
{% macro identity_max_readings() -%}
    {{ return(4) }}
{%- endmacro %}

{# The reading keys of one side of a pair (`a` or `b`), for an IN list: its candidates and the
   reading of the name in the other order; a missing one repeats the first. #}
{% macro reading_keys(side) -%}
    {%- for i in range(1, identity_max_readings() + 1) -%}
        coalesce({{ side }}.reading_key_{{ i }}, {{ side }}.reading_key_1),
    {%- endfor %} coalesce({{ side }}.reading_swapped_key, {{ side }}.reading_key_1)
{%- endmacro %}

{# Variant kanji (異体字) folded to their common form for matching (髙橋 = 高橋, 山﨑 = 山崎): the
   same list as yorisoi.privacy.readings. translate() is the same function on DuckDB and Spark. #}
{% macro fold_kanji(column) -%}
    translate({{ column }}, '髙﨑嵜邊邉澤嶋濱廣德國齊齋', '高崎崎辺辺沢島浜広徳国斉斎')
{%- endmacro %}

{# An address for matching households: normalised like a name (NFKC, no spaces), every dash
   written as "-", and 丁目 / 番地 / 番 / 号 as block separators (本町1丁目2番3号 = 本町1-2-3). #}
{% macro norm_address(column) -%}
    {%- set folded = "translate(" ~ norm_name(column) ~ ", 'ー－‐−―', '-----')" -%}
    replace(replace(replace(replace({{ folded }}, '丁目', '-'), '番地', '-'), '番', '-'), '号', '')
{%- endmacro %}

{# Placeholder values typed where a field is required (docs/identity.md): found by their shape,
   before the data-driven check in int_identity_records (a value many different names share)
   and the data stewards' identity_blocked_values seed for the rest. #}
{% macro placeholder_phone(column) -%}
    {#- E.164: the last eight digits one repeated digit (000-0000-0000, 090-0000-0000) or a run. -#}
    coalesce({{ dbt.right(column, 8) }} in (
        {%- for d in range(10) %}'{{ (d | string) * 8 }}', {% endfor %}'12345678'
    ), false)
{%- endmacro %}

{% macro placeholder_email(column) -%}
    coalesce(
        {{ dbt.split_part(column, "'@'", 1) }} in ('test', 'none', 'noemail', 'nomail', 'dummy', 'sample', 'xxx', 'no')
        or {{ dbt.split_part(column, "'@'", 2) }} in ('example.com', 'example.jp', 'example.co.jp', 'test.com', 'none.jp', 'none.com'),
        false
    )
{%- endmacro %}

{% macro placeholder_postal(column) -%}
    coalesce({{ column }} in ({% for d in range(10) %}'{{ (d | string) * 7 }}', {% endfor %}'1234567'), false)
{%- endmacro %}

{% macro placeholder_address(column) -%}
    coalesce({{ column }} like '%テスト%' or lower({{ column }}) like '%test%' or {{ column }} like '%ダミー%', false)
{%- endmacro %}
