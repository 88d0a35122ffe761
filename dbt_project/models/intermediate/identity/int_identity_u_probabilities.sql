{# u of the Fellegi–Sunter layer (docs/identity.md, step 5): for each comparison level, the
   chance that two records of different people show it, from the values' frequencies (for an
   exact key, the sum of squared value shares: what random pairs show), floored at
   vars.identity.probabilistic.min_probability; and the prior, one other record of the same
   person among the N records (u = 1 - 1 / (N - 1)). A table of its own so the EM rounds of
   int_identity_match_weights read a few rows, not the records. #}

{%- set probabilistic = var('identity').probabilistic %}
{%- set floor = probabilistic.min_probability %}
{%- set shared_keys = [
    'name_key', 'kana_any_key', 'birth_key', 'postal_key', 'postal_area_key',
    'address_key', 'mobile_key', 'landline_key', 'email_key',
] %}

with

records as {{ inlined_cte() }} (

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

{# u per level (identity_comparison_levels). #}
u_levels as (

    {% for comparison in identity_comparison_levels() %}
    {%- set comparison_loop = loop %}
    {%- for level in comparison.levels %}
    select
        '{{ comparison.comparison }}' as comparison,
        {{ loop.index0 }} as comparison_level,
        greatest({{ level.u }}, {{ floor }}) as u
    from agreement_rates
    {% if not (comparison_loop.last and loop.last) %}union all{% endif %}
    {% endfor %}
    {% endfor %}

),

final as (

    select
        {{ dbt.concat(['comparison', "'|'", 'cast(comparison_level as ' ~ dbt.type_string() ~ ')']) }} as u_id,
        comparison,
        comparison_level,
        u
    from u_levels
    union all
    select
        'prior|0' as u_id,
        'prior' as comparison,
        0 as comparison_level,
        1 - 1.0 / (record_count - 1) as u
    from agreement_rates

)

select * from final
