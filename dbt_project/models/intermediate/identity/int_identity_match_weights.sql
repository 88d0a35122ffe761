{{ config(pre_hook=deep_query_hooks()) }}

{# Fellegi–Sunter match weights (docs/identity.md, step 5), learned the way Splink trains them:
   - u (the chance that two records of different people agree at a level) from the values'
     frequencies (int_identity_u_probabilities);
   - m (the same for two records of one person) by expectation maximisation with u fixed, in
     training sessions: among the candidate pairs that agree on the name, or on the birthday,
     each session learns m for the comparisons it was not selected on, and a comparison's m is
     the mean over its sessions (selecting on a field would bias its own m);
   - the prior: one other record of the same person among the records (log2(1 / (N - 1))).
   EM runs on the small table of agreement patterns (int_identity_match_patterns), never on
   the pairs, for
   vars.identity.probabilistic.em_iterations rounds written out as CTEs: plain SQL, the same on
   DuckDB and Spark. Probabilities are floored at min_probability (unlikely, not impossible), and
   the results rounded (9 and 6 decimals) so both engines give the same weights to the bit. #}

{%- set probabilistic = var('identity').probabilistic %}
{%- set comparisons = identity_comparisons() %}
{%- set rounds = probabilistic.em_iterations %}
{%- set floor = probabilistic.min_probability %}
{%- set sessions = identity_training_sessions() %}

with

match_patterns as (

    select * from {{ ref('int_identity_match_patterns') }}

),

u_probabilities as (

    select * from {{ ref('int_identity_u_probabilities') }}

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
        exp(sum(ln(coalesce(pattern_levels.u, 1 - parameters_{{ i - 1 }}.m)))) as non_match_likelihood
    from match_patterns as pattern_levels
    inner join parameters_{{ i - 1 }}
        on pattern_levels.training_session = parameters_{{ i - 1 }}.training_session
        and pattern_levels.comparison = parameters_{{ i - 1 }}.comparison
        and pattern_levels.comparison_level = parameters_{{ i - 1 }}.comparison_level
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
    from match_patterns as pattern_levels
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
        u_probabilities.u
    from learned_m
    inner join u_probabilities
        on learned_m.comparison = u_probabilities.comparison
        and learned_m.comparison_level = u_probabilities.comparison_level
    union all
    select
        comparison,
        comparison_level,
        1 - u as m,
        u
    from u_probabilities
    where comparison = 'prior'

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
