{# Source records grouped into people: connected components over the accepted links.
   Guard against over-merging: a component larger than vars.identity.max_cluster_size (or one
   that did not converge in vars.identity.propagation_rounds rounds) is rebuilt from the strong rules only
   (priority <= strong_priority); if it is still too large, its records stay apart. Splitting a
   person in two is recoverable; sending one person's data to another is not. #}

{%- set identity = var('identity') %}
{%- set rounds = identity.propagation_rounds %}

with
{%- set all_rules_inputs %}

records as (

    select record_key from {{ ref('int_identity_records') }}

),

edges as (

    select record_a, record_b, priority
    from {{ ref('int_identity_edges') }}
    where accepted

)
{%- endset %}
{%- set all_rules_components = connected_components('edges', rounds, 'all_rules', all_rules_inputs) %}
{{ all_rules_inputs }},

{{ all_rules_components }},
{%- set strong_rules_inputs %}

all_rules_clusters as (

    select
        records.record_key,
        coalesce(all_rules_round_{{ rounds }}.label, records.record_key) as cluster_key
    from records
    left join all_rules_round_{{ rounds }}
        on records.record_key = all_rules_round_{{ rounds }}.node

),

all_rules_unfit as (

    {{ unfit_clusters('all_rules_clusters', 'edges', identity.max_cluster_size) }}

),

strong_records as (

    select all_rules_clusters.record_key
    from all_rules_clusters
    inner join all_rules_unfit
        on all_rules_clusters.cluster_key = all_rules_unfit.cluster_key

),

strong_edges as (

    select edges.record_a, edges.record_b
    from edges
    inner join strong_records as a on edges.record_a = a.record_key
    inner join strong_records as b on edges.record_b = b.record_key
    where edges.priority <= {{ identity.strong_priority }}

)
{%- endset %}
{{ strong_rules_inputs }},

{{ connected_components(
    'strong_edges', rounds, 'strong_rules', [all_rules_inputs, all_rules_components, strong_rules_inputs]
) }},

strong_rules_clusters as (

    select
        strong_records.record_key,
        coalesce(strong_rules_round_{{ rounds }}.label, strong_records.record_key) as cluster_key
    from strong_records
    left join strong_rules_round_{{ rounds }}
        on strong_records.record_key = strong_rules_round_{{ rounds }}.node

),

strong_rules_unfit as (

    {{ unfit_clusters('strong_rules_clusters', 'strong_edges', identity.max_cluster_size) }}

),

final as (

    select
        all_rules_clusters.record_key,
        case
            when all_rules_unfit.cluster_key is null then all_rules_clusters.cluster_key
            when strong_rules_unfit.cluster_key is null then strong_rules_clusters.cluster_key
            else all_rules_clusters.record_key
        end as cluster_key,
        case
            when all_rules_unfit.cluster_key is null then 'all_rules'
            when strong_rules_unfit.cluster_key is null then 'strong_rules_only'
            else 'kept_apart'
        end as resolution
    from all_rules_clusters
    left join all_rules_unfit
        on all_rules_clusters.cluster_key = all_rules_unfit.cluster_key
    left join strong_rules_clusters
        on all_rules_clusters.record_key = strong_rules_clusters.record_key
    left join strong_rules_unfit
        on strong_rules_clusters.cluster_key = strong_rules_unfit.cluster_key

)

select * from final
