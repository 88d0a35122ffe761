{# Every candidate pair scored (docs/identity.md, step 5): its match weight is the log2 odds that
   the two records are one person, the prior's weight plus each comparison's (int_identity_match_weights)
   plus the name's term-frequency adjustment. A pair at or above the threshold becomes a
   `fellegi_sunter` link in int_identity_edges unless a veto (identity_veto_reason) says the two
   records cannot be one person: households never merge on a score. `evidence` says how each
   comparison came out.
   The threshold is vars.identity.probabilistic.min_match_weight for a set of
   threshold_reference_records records or more, and lower by log2(reference / records) for a
   smaller one of at least threshold_min_records (smaller sets, as a test's handful of records,
   were not measured and keep min_match_weight): the weights of two agreeing identifiers (a kana and a birthday) rise with the
   number of records by about as much (their u is mostly the namesakes and households that come
   with each person, about 1 / N, while the prior falls as 1 / N), so a fixed threshold merged
   nothing in a set of 300 people. Larger sets keep min_match_weight. #}

{%- set probabilistic = var('identity').probabilistic %}
{%- set comparisons = identity_comparisons() %}

with

candidate_pairs as (

    select * from {{ ref('int_identity_candidate_pairs') }}

),

match_weights as (

    select * from {{ ref('int_identity_match_weights') }}

),

records as {{ inlined_cte() }} (

    select * from {{ ref('int_identity_records') }}

),

{# The weights as one row, a column per level, so scoring is a cross join and arithmetic. #}
weight_row as (

    select
        {%- for comparison, labels in comparisons.items() %}
        {%- for label in labels %}
        max(case when comparison = '{{ comparison }}' and comparison_level = {{ loop.index0 }} then match_weight end)
            as {{ comparison }}_{{ loop.index0 }}_weight,
        {%- endfor %}
        {%- endfor %}
        max(case when comparison = 'prior' then match_weight end) as prior_weight,
        {#- Fewer records than threshold_min_records: not measured, the threshold stays. #}
        case
            when max(case when comparison = 'prior' then match_weight end)
                > -log2({{ probabilistic.threshold_min_records }} - 2.0)
                then {{ probabilistic.min_match_weight }}
            else
                {{ probabilistic.min_match_weight }} - greatest(
                    max(case when comparison = 'prior' then match_weight end)
                    + log2({{ probabilistic.threshold_reference_records }} - 2.0),
                    0.0
                )
        end as min_match_weight
    from match_weights

),

scored as (

    select
        candidate_pairs.pair_id,
        candidate_pairs.record_a,
        candidate_pairs.record_b,
        weight_row.min_match_weight,
        weight_row.prior_weight
        {%- for comparison, labels in comparisons.items() %}
        + coalesce(case candidate_pairs.{{ comparison }}_level
            {%- for label in labels %}
            when {{ loop.index0 }} then weight_row.{{ comparison }}_{{ loop.index0 }}_weight
            {%- endfor %}
        end, 0)
        {%- endfor %}
        + candidate_pairs.name_tf_adjustment as match_weight,
        concat_ws(
            ' ',
            {%- for comparison, labels in comparisons.items() %}
            case candidate_pairs.{{ comparison }}_level
                {%- for label in labels %}
                when {{ loop.index0 }} then '{{ comparison }}:{{ label }}'
                {%- endfor %}
            end{{ "," if not loop.last }}
            {%- endfor %}
        ) as evidence
    from candidate_pairs
    cross join weight_row

),

checked as (

    select
        scored.*,
        {{ identity_veto_reason('a', 'b') }} as veto_reason
    from scored
    inner join records as a
        on scored.record_a = a.record_key
    inner join records as b
        on scored.record_b = b.record_key

),

final as (

    select
        pair_id,
        record_a,
        record_b,
        match_weight,
        round(1 / (1 + power(2, -match_weight)), 9) as match_probability,
        evidence,
        veto_reason,
        round(min_match_weight, 6) as min_match_weight,
        match_weight >= round(min_match_weight, 6) as above_threshold,
        match_weight >= round(min_match_weight, 6) and veto_reason is null as accepted
    from checked

)

select * from final
