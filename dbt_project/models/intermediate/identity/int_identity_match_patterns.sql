{# The agreement patterns EM learns from (docs/identity.md, step 5): the candidate pairs counted by
   their combination of comparison levels, one row per training session, pattern and comparison
   the session learns (with that level's u), and one per session and pattern for the session's
   share of matches (u null). A session is the candidate pairs that agree on the name, or on the
   birthday; it learns m of the other comparisons. A table of its own, a few hundred rows, so
   every EM round of int_identity_match_weights reads it instead of the pairs. #}

{%- set comparisons = identity_comparisons() %}
{%- set level_columns = comparisons | list | join('_level, ') ~ '_level' %}
{%- set ordered_levels = 'coalesce(' ~ (comparisons | list | join('_level, -1), coalesce(')) ~ '_level, -1)' %}
{%- set sessions = identity_training_sessions() %}

with

candidate_pairs as (

    select * from {{ ref('int_identity_candidate_pairs') }}

),

u_probabilities as (

    select * from {{ ref('int_identity_u_probabilities') }}

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
            {#- A missing level first on both engines (their default null orders differ). #}
            order by {{ ordered_levels }}
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

final as (

    select
        {{ dbt.concat([
            'pattern_levels.training_session', "'|'", 'cast(pattern_levels.pattern_id as ' ~ dbt.type_string() ~ ')',
            "'|'", 'pattern_levels.comparison',
        ]) }} as pattern_level_id,
        pattern_levels.training_session,
        pattern_levels.pattern_id,
        pattern_levels.pair_count,
        pattern_levels.comparison,
        pattern_levels.comparison_level,
        u_probabilities.u
    from pattern_levels
    left join u_probabilities
        on pattern_levels.comparison = u_probabilities.comparison
        and pattern_levels.comparison_level = u_probabilities.comparison_level
        and pattern_levels.comparison <> 'prior'

)

select * from final
