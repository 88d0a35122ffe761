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
