{# Fellegi–Sunter match weights (docs/identity.md, step 5), learned the way Splink trains them:
   - u (the chance that two records of different people agree at a level) from the values'
     frequencies: for an exact key, the sum of squared value shares (what random pairs show);
   - m (the same for two records of one person) by expectation maximisation with u fixed, in
     training sessions: among the candidate pairs that agree on the name, or on the birthday,
     each session learns m for the comparisons it was not selected on, and a comparison's m is
     the mean over its sessions (selecting on a field would bias its own m);
   - the prior: one other record of the same person among the records (log2(1 / (N - 1))).
   EM runs on the small table of agreement patterns (one row per session and combination of
   levels, with how many candidate pairs show it), never on the pairs, for
   vars.identity.probabilistic.em_iterations rounds written out as CTEs: plain SQL, the same on
   DuckDB and Spark. Probabilities are floored at min_probability (unlikely, not impossible), and
   the results rounded (9 and 6 decimals) so both engines give the same weights to the bit. #}

{%- set probabilistic = var('identity').probabilistic %}
{%- set comparisons = identity_comparisons() %}
{%- set rounds = probabilistic.em_iterations %}
{%- set floor = probabilistic.min_probability %}
{%- set level_columns = comparisons | list | join('_level, ') ~ '_level' %}
{#- Sessions select on fields a household does not share; a session on the postal code or the
   address would take a family (one address, postal code and landline) for one person. #}
{%- set sessions = {
    'name': 'name_level >= 2',
    'birth': 'birth_level = 1',
} %}
{%- set shared_keys = [
    'name_key', 'kana_any_key', 'birth_key', 'postal_key', 'postal_area_key',
    'address_key', 'mobile_key', 'landline_key', 'email_key',
] %}

with

candidate_pairs as (

    select * from {{ ref('int_identity_candidate_pairs') }}

),

records as (

    select * from {{ ref('int_identity_records') }}

),

{#- u: the chance that two random records that both have the key agree on it. #}
{% for key in shared_keys %}
{{ key }}_counts as (

    select count(*) as value_count
    from records
    where {{ key }} is not null
    group by {{ key }}

),

{{ key }}_rate as (

    select sum(cast(value_count as double) * value_count) / (sum(value_count) * sum(value_count)) as rate
    from {{ key }}_counts

),

{% endfor %}

record_count as (

    select count(*) as records
    from records

),

agreement_rates as (

    select
        {%- for key in shared_keys %}
        {{ key }}_rate.rate as {{ key }}_rate,
        {%- endfor %}
        record_count.records as record_count
    from record_count
    {% for key in shared_keys -%}
    cross join {{ key }}_rate
    {% endfor %}

),

{#- u per level. A kana among the kanji name's other candidate readings: one chance per reading. #}
{%- set u_rates = [
    ('name', 3, 'name_key_rate'),
    ('name', 2, 'kana_any_key_rate'),
    ('name', 1, 'kana_any_key_rate * ' ~ (identity_max_readings() - 1)),
    ('name', 0, '1 - kana_any_key_rate * ' ~ identity_max_readings() ~ ' - name_key_rate'),
    ('birth', 1, 'birth_key_rate'),
    ('birth', 0, '1 - birth_key_rate'),
    ('postal', 2, 'postal_key_rate'),
    ('postal', 1, 'postal_area_key_rate - postal_key_rate'),
    ('postal', 0, '1 - postal_area_key_rate'),
    ('address', 1, 'address_key_rate'),
    ('address', 0, '1 - address_key_rate'),
    ('phone', 2, 'mobile_key_rate'),
    ('phone', 1, 'landline_key_rate'),
    ('phone', 0, '1 - mobile_key_rate - landline_key_rate'),
    ('email', 1, 'email_key_rate'),
    ('email', 0, '1 - email_key_rate'),
] %}

u_levels as (

    {% for comparison, level, rate in u_rates %}
    select
        '{{ comparison }}' as comparison,
        {{ level }} as comparison_level,
        greatest({{ rate }}, {{ floor }}) as u
    from agreement_rates
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

patterns as (

    select
        {%- for comparison in comparisons %}
        {{ comparison }}_level,
        {%- endfor %}
        count(*) as pair_count
    from candidate_pairs
    group by {{ level_columns }}

),

numbered_patterns as (

    select
        row_number() over (
            order by {{ level_columns }}
        ) as pattern_id,
        patterns.*
    from patterns

),

{# One row per session, pattern and comparison the session learns, and one for the session's
   share of matches. #}
pattern_levels as (

    {% for training_session, condition in sessions.items() %}
    {%- set session_loop = loop %}
    {% for comparison in comparisons if comparison != training_session %}
    select
        '{{ training_session }}' as training_session,
        pattern_id,
        pair_count,
        '{{ comparison }}' as comparison,
        {{ comparison }}_level as comparison_level
    from numbered_patterns
    where {{ condition }} and {{ comparison }}_level is not null
    union all
    {% endfor %}
    select
        '{{ training_session }}' as training_session,
        pattern_id,
        pair_count,
        'prior' as comparison,
        0 as comparison_level
    from numbered_patterns
    where {{ condition }}
    {% if not session_loop.last %}union all{% endif %}
    {% endfor %}

),

{# Starting values: m leans to the closest level; half the pairs of a session match. #}
parameters_0 as (

    {% for training_session in sessions %}
    {% for comparison, labels in comparisons.items() if comparison != training_session %}
    {%- set top = labels | length - 1 %}
    {%- for level in range(labels | length) %}
    select
        '{{ training_session }}' as training_session,
        '{{ comparison }}' as comparison,
        {{ level }} as comparison_level,
        {{ 0.9 if level == top else 0.1 / top }} as m
    union all
    {% endfor %}
    {% endfor %}
    select
        '{{ training_session }}' as training_session,
        'prior' as comparison,
        0 as comparison_level,
        0.5 as m
    {{ "union all" if not loop.last }}
    {% endfor %}

),

{% for i in range(1, rounds + 1) %}
expected_{{ i }} as (

    select
        pattern_levels.training_session,
        pattern_levels.pattern_id,
        exp(sum(ln(parameters_{{ i - 1 }}.m))) as match_likelihood,
        exp(sum(ln(coalesce(u_levels.u, 1 - parameters_{{ i - 1 }}.m)))) as non_match_likelihood
    from pattern_levels
    inner join parameters_{{ i - 1 }}
        on pattern_levels.training_session = parameters_{{ i - 1 }}.training_session
        and pattern_levels.comparison = parameters_{{ i - 1 }}.comparison
        and pattern_levels.comparison_level = parameters_{{ i - 1 }}.comparison_level
    left join u_levels
        on pattern_levels.comparison = u_levels.comparison
        and pattern_levels.comparison_level = u_levels.comparison_level
    group by pattern_levels.training_session, pattern_levels.pattern_id

),

counted_{{ i }} as (

    select
        pattern_levels.training_session,
        pattern_levels.comparison,
        pattern_levels.comparison_level,
        sum(
            pattern_levels.pair_count * expected_{{ i }}.match_likelihood
            / (expected_{{ i }}.match_likelihood + expected_{{ i }}.non_match_likelihood)
        ) as matches,
        sum(pattern_levels.pair_count) as pairs
    from pattern_levels
    inner join expected_{{ i }}
        on pattern_levels.training_session = expected_{{ i }}.training_session
        and pattern_levels.pattern_id = expected_{{ i }}.pattern_id
    group by pattern_levels.training_session, pattern_levels.comparison, pattern_levels.comparison_level

),

parameters_{{ i }} as (

    select
        training_session,
        comparison,
        comparison_level,
        case
            when comparison = 'prior' then least(greatest(matches / pairs, {{ floor }}), 1 - {{ floor }})
            else greatest(matches / sum(matches) over (partition by training_session, comparison), {{ floor }})
        end as m
    from counted_{{ i }}

),

{% endfor %}

{# A level no session's pairs showed keeps its starting m. #}
learned_m as (

    select
        parameters_0.comparison,
        parameters_0.comparison_level,
        avg(coalesce(parameters_{{ rounds }}.m, parameters_0.m)) as m
    from parameters_0
    left join parameters_{{ rounds }}
        on parameters_0.training_session = parameters_{{ rounds }}.training_session
        and parameters_0.comparison = parameters_{{ rounds }}.comparison
        and parameters_0.comparison_level = parameters_{{ rounds }}.comparison_level
    where parameters_0.comparison <> 'prior'
    group by parameters_0.comparison, parameters_0.comparison_level

),

learned as (

    select
        learned_m.comparison,
        learned_m.comparison_level,
        learned_m.m,
        u_levels.u
    from learned_m
    inner join u_levels
        on learned_m.comparison = u_levels.comparison
        and learned_m.comparison_level = u_levels.comparison_level
    union all
    select
        'prior' as comparison,
        0 as comparison_level,
        1.0 / (record_count - 1) as m,
        1 - 1.0 / (record_count - 1) as u
    from agreement_rates

),

final as (

    select
        {{ dbt.concat(['comparison', "'|'", 'cast(comparison_level as ' ~ dbt.type_string() ~ ')']) }} as weight_id,
        comparison,
        comparison_level,
        case
            {%- for comparison, labels in comparisons.items() %}
            {%- for label in labels %}
            when comparison = '{{ comparison }}' and comparison_level = {{ loop.index0 }} then '{{ label }}'
            {%- endfor %}
            {%- endfor %}
            else 'prior'
        end as level_label,
        round(m, 9) as m,
        round(u, 9) as u,
        round(log2(m / u), 6) as match_weight
    from learned

)

select * from final
