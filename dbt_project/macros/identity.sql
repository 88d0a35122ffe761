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

{# Why two records (aliases `a` and `b` of int_identity_records) cannot be one person, or null:
   they disagree on something a person does not change (docs/identity.md, step 4). Used by the
   rules (int_identity_edges) and the probabilistic layer (int_identity_match_scores) alike. #}
{% macro identity_veto_reason(a, b) -%}
    case
        {#- Names agree in either order (a shop form's given-name-first habit). #}
        when {{ a }}.name_key <> {{ b }}.name_key
            and {{ a }}.name_key <> coalesce({{ b }}.name_swapped_key, {{ b }}.name_key)
            and coalesce({{ a }}.name_swapped_key, {{ a }}.name_key) <> {{ b }}.name_key then 'name_differs'
        when {{ a }}.kana_key <> {{ b }}.kana_key
            and {{ a }}.kana_key <> coalesce({{ b }}.kana_swapped_key, {{ b }}.kana_key)
            and coalesce({{ a }}.kana_swapped_key, {{ a }}.kana_key) <> {{ b }}.kana_key then 'kana_differs'
        {#- One side has kana, the other only a kanji name: the kana must be one of its readings,
            unless both records carry that kanji name (then the kana is a reading of it that the
            dictionary does not list, as 幹 read ミキ). #}
        when {{ a }}.kana_key is null and {{ b }}.kana_key is not null and {{ a }}.reading_key_1 is not null
            and coalesce({{ a }}.name_key <> {{ b }}.name_key, true)
            and {{ b }}.kana_key not in ({{ reading_keys('a') }})
            and coalesce({{ b }}.kana_swapped_key, {{ b }}.kana_key) not in ({{ reading_keys('a') }}) then 'reading_differs'
        when {{ b }}.kana_key is null and {{ a }}.kana_key is not null and {{ b }}.reading_key_1 is not null
            and coalesce({{ a }}.name_key <> {{ b }}.name_key, true)
            and {{ a }}.kana_key not in ({{ reading_keys('b') }})
            and coalesce({{ a }}.kana_swapped_key, {{ a }}.kana_key) not in ({{ reading_keys('b') }}) then 'reading_differs'
        when {{ a }}.birth_key <> {{ b }}.birth_key then 'birthday_differs'
    end
{%- endmacro %}

{# The comparisons of the probabilistic layer, written once: every model that compares, counts,
   trains or scores renders them from here (int_identity_candidate_pairs, _u_probabilities,
   _match_patterns, _match_weights, _match_scores), so their levels cannot drift apart.
   Each comparison lists its levels, weakest first: level 0 is "disagrees", the last level the
   closest agreement. A level has
   - `label`: its name in weights and evidence;
   - `when`: the SQL condition on the pair's records (aliases `a` and `b` of
     int_identity_records); the levels are tried closest first and the first that holds wins, so
     "differs" only needs both records to have the field. No level holds for a comparison that
     one record cannot make (a field it lacks): the level is null and counts for nothing;
   - `u`: the chance that two records of different people show it, an expression over the
     agreement rates of int_identity_u_probabilities (`<key>_rate`: the chance that two random
     records that both have the key agree on it).
   The name's `reading` level is a kana among the kanji name's other candidate readings (陽菜:
   ヒナ as well as ハルナ), one chance per reading. #}
{% macro identity_comparison_levels() -%}
    {%- set readings = identity_max_readings() -%}
    {{ return([
        {'comparison': 'name', 'levels': [
            {'label': 'differs',
             'when': '(a.kana_any_key is not null and b.kana_any_key is not null)'
                ~ ' or (a.name_key is not null and b.name_key is not null)',
             'u': '1 - kana_any_key_rate * ' ~ readings ~ ' - name_key_rate'},
            {'label': 'reading',
             'when': 'a.kana_key in (' ~ reading_keys('b') ~ ') or b.kana_key in (' ~ reading_keys('a') ~ ')',
             'u': 'kana_any_key_rate * ' ~ (readings - 1)},
            {'label': 'kana',
             'when': 'a.kana_any_key = b.kana_any_key'
                ~ ' or a.kana_any_key = coalesce(b.kana_swapped_key, b.reading_swapped_key)'
                ~ ' or coalesce(a.kana_swapped_key, a.reading_swapped_key) = b.kana_any_key',
             'u': 'kana_any_key_rate'},
            {'label': 'kanji',
             'when': 'a.name_key = b.name_key or a.name_key = b.name_swapped_key or a.name_swapped_key = b.name_key',
             'u': 'name_key_rate'},
        ]},
        {'comparison': 'birth', 'levels': [
            {'label': 'differs', 'when': 'a.birth_key <> b.birth_key', 'u': '1 - birth_key_rate'},
            {'label': 'agrees', 'when': 'a.birth_key = b.birth_key', 'u': 'birth_key_rate'},
        ]},
        {'comparison': 'postal', 'levels': [
            {'label': 'differs', 'when': 'a.postal_key <> b.postal_key', 'u': '1 - postal_area_key_rate'},
            {'label': 'area', 'when': 'a.postal_area_key = b.postal_area_key', 'u': 'postal_area_key_rate - postal_key_rate'},
            {'label': 'exact', 'when': 'a.postal_key = b.postal_key', 'u': 'postal_key_rate'},
        ]},
        {'comparison': 'address', 'levels': [
            {'label': 'differs', 'when': 'a.address_key <> b.address_key', 'u': '1 - address_key_rate'},
            {'label': 'agrees', 'when': 'a.address_key = b.address_key', 'u': 'address_key_rate'},
        ]},
        {'comparison': 'phone', 'levels': [
            {'label': 'differs',
             'when': 'coalesce(a.mobile_key, a.landline_key) is not null and coalesce(b.mobile_key, b.landline_key) is not null',
             'u': '1 - mobile_key_rate - landline_key_rate'},
            {'label': 'landline', 'when': 'a.landline_key = b.landline_key', 'u': 'landline_key_rate'},
            {'label': 'mobile', 'when': 'a.mobile_key = b.mobile_key', 'u': 'mobile_key_rate'},
        ]},
        {'comparison': 'email', 'levels': [
            {'label': 'differs', 'when': 'a.email_key <> b.email_key', 'u': '1 - email_key_rate'},
            {'label': 'agrees', 'when': 'a.email_key = b.email_key', 'u': 'email_key_rate'},
        ]},
    ]) }}
{%- endmacro %}

{# The comparisons and their level labels, weakest first ({comparison: [label, ...]}), from
   identity_comparison_levels: the pattern columns (`<comparison>_level`) of the candidate
   pairs, the agreement patterns and the scores. #}
{% macro identity_comparisons() -%}
    {%- set comparisons = {} -%}
    {%- for comparison in identity_comparison_levels() -%}
        {%- do comparisons.update({comparison.comparison: comparison.levels | map(attribute='label') | list}) -%}
    {%- endfor -%}
    {{ return(comparisons) }}
{%- endmacro %}

{# One comparison's level of a pair (records `a` and `b`), as a CASE: closest level first. #}
{% macro identity_comparison_case(comparison) -%}
    case
        {%- for level in comparison.levels | reverse %}
        when {{ level.when }} then {{ comparison.levels | length - loop.index }}
        {%- endfor %}
    end
{%- endmacro %}

{# The EM training sessions of the probabilistic layer: each is the candidate pairs meeting its
   condition and learns m of the comparisons other than its own. They select on fields a household
   does not share: a session on the postal code or the address would take a family (one address,
   postal code and landline) for one person. #}
{% macro identity_training_sessions() -%}
    {%- set comparisons = identity_comparisons() -%}
    {{ return({
        'name': 'name_level >= ' ~ comparisons['name'].index('kana'),
        'birth': 'birth_level = ' ~ comparisons['birth'].index('agrees'),
    }) }}
{%- endmacro %}
