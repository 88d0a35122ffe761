{# The data steward's review queue (docs/identity.md): every merge the Fellegi–Sunter layer made
   that no deterministic rule also made, least certain first. One row per probabilistic link
   between two records that ended in one person. A steward who finds a wrong one lists the pair
   in the identity_do_not_merge seed. #}

with

edges as (

    select * from {{ ref('int_identity_edges') }}

),

match_scores as (

    select * from {{ ref('int_identity_match_scores') }}

),

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

rule_linked as (

    select distinct
        record_a,
        record_b
    from edges
    where accepted and rule <> 'fellegi_sunter'

),

probabilistic_merges as (

    select
        edges.record_a,
        edges.record_b,
        a.person_id,
        a.source as source_a,
        b.source as source_b
    from edges
    inner join person_ids as a
        on edges.record_a = a.record_key
    inner join person_ids as b
        on edges.record_b = b.record_key
    left join rule_linked
        on edges.record_a = rule_linked.record_a
        and edges.record_b = rule_linked.record_b
    where edges.accepted
        and edges.rule = 'fellegi_sunter'
        and a.person_id = b.person_id
        and rule_linked.record_a is null

),

final as (

    select
        match_scores.pair_id,
        probabilistic_merges.person_id,
        probabilistic_merges.record_a,
        probabilistic_merges.record_b,
        probabilistic_merges.source_a,
        probabilistic_merges.source_b,
        match_scores.match_weight,
        match_scores.match_probability,
        match_scores.evidence,
        row_number() over (order by match_scores.match_weight, match_scores.pair_id) as review_rank
    from probabilistic_merges
    inner join match_scores
        on probabilistic_merges.record_a = match_scores.record_a
        and probabilistic_merges.record_b = match_scores.record_b

)

select * from final
