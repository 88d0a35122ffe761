{# Candidate links between two source records, one row per pair and rule, from the rules in
   dbt_project.yml (vars.identity.rules). A link is vetoed when the two records disagree on
   something a person does not change: name, name in kana, the readings of a kanji name against
   a name in kana, or birthday (a family member who gave the household's email, phone or
   address), or when a data steward listed the pair in the identity_do_not_merge seed. Pairs
   the Fellegi–Sunter layer scores at or above its threshold (int_identity_match_scores,
   vars.identity.probabilistic.min_match_weight) are links of the rule `fellegi_sunter`, vetoed
   alike. Key values shared by more than max_group_size records link nothing and are listed in
   int_identity_shared_keys instead.
   The scored pairs' vetoes are int_identity_match_scores' own (the same identity_veto_reason on
   the same records): only the rules' pairs are joined to their records here. #}

{%- set identity = var('identity') %}

with

records as {{ inlined_cte() }} (

    select * from {{ ref('int_identity_records') }}

),

do_not_merge as (

    select * from {{ ref('identity_do_not_merge') }}

),

match_scores as (

    select * from {{ ref('int_identity_match_scores') }}

),

{% for rule in identity.rules %}
{%- set keys = rule['keys'] %}
{{ rule.name }}_groups as (

    select
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        count(*) as group_size
    from records
    where {{ keys[0] }} is not null
        {%- for key in keys[1:] %}
        and {{ key }} is not null
        {%- endfor %}
    group by {{ keys | join(', ') }}
    having count(*) between 2 and {{ identity.max_group_size }}

),

{{ rule.name }}_members as (

    select
        {%- for key in keys %}
        records.{{ key }},
        {%- endfor %}
        records.record_key
    from records
    inner join {{ rule.name }}_groups
        on records.{{ keys[0] }} = {{ rule.name }}_groups.{{ keys[0] }}
        {%- for key in keys[1:] %}
        and records.{{ key }} = {{ rule.name }}_groups.{{ key }}
        {%- endfor %}

),

{{ rule.name }}_pairs as (

    select
        member_a.record_key as record_a,
        member_b.record_key as record_b,
        '{{ rule.name }}' as rule,
        {{ rule.priority }} as priority
    from {{ rule.name }}_members as member_a
    inner join {{ rule.name }}_members as member_b
        on member_a.{{ keys[0] }} = member_b.{{ keys[0] }}
        {%- for key in keys[1:] %}
        and member_a.{{ key }} = member_b.{{ key }}
        {%- endfor %}
        and member_a.record_key < member_b.record_key

),

{% endfor %}

rule_pairs as (

    {% for rule in identity.rules %}
    select * from {{ rule.name }}_pairs
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

rule_checked as (

    select
        rule_pairs.record_a,
        rule_pairs.record_b,
        rule_pairs.rule,
        rule_pairs.priority,
        {{ identity_veto_reason('a', 'b') }} as veto_reason
    from rule_pairs
    inner join records as a
        on rule_pairs.record_a = a.record_key
    inner join records as b
        on rule_pairs.record_b = b.record_key

),

pairs as (

    select * from rule_checked
    union all
    {#- Where the rules run out: pairs the probabilistic layer scores high enough. #}
    select
        record_a,
        record_b,
        'fellegi_sunter' as rule,
        {{ identity.probabilistic.priority }} as priority,
        veto_reason
    from match_scores
    where above_threshold

),

checked as (

    select
        pairs.record_a,
        pairs.record_b,
        pairs.rule,
        pairs.priority,
        case
            when do_not_merge.record_a is not null then 'do_not_merge'
            else pairs.veto_reason
        end as veto_reason
    from pairs
    left join do_not_merge
        on (pairs.record_a = do_not_merge.record_a and pairs.record_b = do_not_merge.record_b)
        or (pairs.record_a = do_not_merge.record_b and pairs.record_b = do_not_merge.record_a)

),

final as (

    select
        {{ dbt.concat(['record_a', "'|'", 'record_b', "'|'", 'rule']) }} as edge_id,
        record_a,
        record_b,
        rule,
        priority,
        veto_reason is null as accepted,
        veto_reason
    from checked

)

select * from final
