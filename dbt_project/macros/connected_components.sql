{# Connected components in plain SQL that runs on DuckDB and Spark: min-label propagation with
   pointer jumping (each round takes the smallest label among a node's neighbours, then the label
   of that label), so a component of diameter d converges in about log2(d) + 1 rounds instead of d.

   `edges` is a relation or CTE with columns record_a, record_b. Only nodes with an edge take
   part (a record without links is its own component: the caller adds those). Writes CTEs named
   <prefix>_*; the result is <prefix>_round_<rounds>(node, label), label = the smallest record key
   of the node's component once converged. The caller checks convergence (no edge between two
   labels) and treats components that did not converge like oversized ones.
   The rounds join and compare integers, not the keys: each key is numbered once in key order
   (so the smallest number is the smallest key) and the labels are turned back into keys at the
   end. Joining on 64-bit integers instead of keys of 20 to 70 characters keeps every round's hash
   tables small, which is what spilled under the memory limit at L. #}
{% macro connected_components_ctes(edges, rounds, prefix='cc') -%}
{{ prefix }}_nodes as {{ materialized_cte() }} (
    select
        node_key,
        row_number() over (order by node_key) as node
    from (
        select record_a as node_key from {{ edges }}
        union
        select record_b as node_key from {{ edges }}
    ) as node_keys
),
{{ prefix }}_edges as {{ materialized_cte() }} (
    select a.node as node_a, b.node as node_b
    from {{ edges }} as edges
    inner join {{ prefix }}_nodes as a on edges.record_a = a.node_key
    inner join {{ prefix }}_nodes as b on edges.record_b = b.node_key
),
{{ prefix }}_links as {{ materialized_cte() }} (
    select node_a as src, node_b as dst from {{ prefix }}_edges
    union all
    select node_b as src, node_a as dst from {{ prefix }}_edges
),
{{ prefix }}_step_0 as {{ materialized_cte() }} (
    select distinct src as node, src as label from {{ prefix }}_links
),
{%- for i in range(1, rounds + 1) %}
{{ prefix }}_hop_{{ i }} as {{ materialized_cte() }} (
    select links.dst as node, min(previous.label) as label
    from {{ prefix }}_links as links
    inner join {{ prefix }}_step_{{ i - 1 }} as previous
        on links.src = previous.node
    group by links.dst
),
{{ prefix }}_min_{{ i }} as {{ materialized_cte() }} (
    select
        hop.node,
        case when hop.label < previous.label then hop.label else previous.label end as label
    from {{ prefix }}_hop_{{ i }} as hop
    inner join {{ prefix }}_step_{{ i - 1 }} as previous
        on hop.node = previous.node
),
{{ prefix }}_step_{{ i }} as {{ materialized_cte() }} (
    select
        node_label.node,
        case when label_label.label < node_label.label then label_label.label else node_label.label end as label
    from {{ prefix }}_min_{{ i }} as node_label
    inner join {{ prefix }}_min_{{ i }} as label_label
        on node_label.label = label_label.node
),
{%- endfor %}
{{ prefix }}_round_{{ rounds }} as {{ materialized_cte() }} (
    select
        nodes.node_key as node,
        labels.node_key as label
    from {{ prefix }}_step_{{ rounds }} as step
    inner join {{ prefix }}_nodes as nodes on step.node = nodes.node
    inner join {{ prefix }}_nodes as labels on step.label = labels.node
)
{%- endmacro %}

{# Clusters that must not stand as they are: larger than `max_size`, or not converged (an edge
   still joins two labels; both sides are marked). #}
{% macro unfit_clusters(clusters, edges, max_size) -%}
    select cluster_key
    from {{ clusters }}
    group by cluster_key
    having count(*) > {{ max_size }}

    union

    select a.cluster_key
    from {{ edges }} as edges
    inner join {{ clusters }} as a on edges.record_a = a.record_key
    inner join {{ clusters }} as b on edges.record_b = b.record_key
    where a.cluster_key <> b.cluster_key

    union

    select b.cluster_key
    from {{ edges }} as edges
    inner join {{ clusters }} as a on edges.record_a = a.record_key
    inner join {{ clusters }} as b on edges.record_b = b.record_key
    where a.cluster_key <> b.cluster_key
{%- endmacro %}
