{# The probabilistic layer's candidate pairs (docs/identity.md, step 5): two records that share a
   value of any blocking key (vars.identity.probabilistic.blocking_keys; values held by more than
   max_block_size records block nothing), with the level of every comparison
   (identity_comparison_levels) and the term-frequency adjustment of the name: agreeing on a rare
   name is stronger evidence than agreeing on a common one, by log2(u / tf), where tf is the
   share of records with that value and u the chance that two random records agree at all. #}

{%- set probabilistic = var('identity').probabilistic %}
{%- set name_levels = identity_comparisons()['name'] %}

with

records as {{ inlined_cte() }} (

    select * from {{ ref('int_identity_records') }}

),

{% for key in probabilistic.blocking_keys %}
{{ key }}_blocks as (

    select {{ key }} as block
    from records
    where {{ key }} is not null
    group by {{ key }}
    having count(*) between 2 and {{ probabilistic.max_block_size }}

),

{{ key }}_members as (

    select
        records.record_key,
        {{ key }}_blocks.block
    from records
    inner join {{ key }}_blocks
        on records.{{ key }} = {{ key }}_blocks.block

),

{{ key }}_pairs as (

    select
        member_a.record_key as record_a,
        member_b.record_key as record_b
    from {{ key }}_members as member_a
    inner join {{ key }}_members as member_b
        on member_a.block = member_b.block
        and member_a.record_key < member_b.record_key

),

{% endfor %}

pairs as (

    {% for key in probabilistic.blocking_keys %}
    select * from {{ key }}_pairs
    {% if not loop.last %}union{% endif %}
    {% endfor %}

),

{% for key in ['name_key', 'kana_any_key'] %}
{{ key }}_counts as (

    select
        {{ key }} as key_value,
        count(*) as value_count
    from records
    where {{ key }} is not null
    group by {{ key }}

),

{{ key }}_totals as (

    select cast(sum(value_count) as double) as record_count
    from {{ key }}_counts

),

{{ key }}_term_frequencies as (

    select
        {{ key }}_counts.key_value,
        {#- log2(u / tf): u = sum(tf^2), the chance that two random records agree. #}
        {#- Rounded: the engines may differ in the last bits of a sum. #}
        round(log2(sum(
            ({{ key }}_counts.value_count / {{ key }}_totals.record_count)
            * ({{ key }}_counts.value_count / {{ key }}_totals.record_count)
        ) over () / ({{ key }}_counts.value_count / {{ key }}_totals.record_count)), 6) as tf_adjustment
    from {{ key }}_counts
    cross join {{ key }}_totals

),

{% endfor %}

compared as (

    select
        pairs.record_a,
        pairs.record_b,
        {%- for comparison in identity_comparison_levels() %}
        {{ identity_comparison_case(comparison) }} as {{ comparison.comparison }}_level,
        {%- endfor %}
        a.name_key as name_value,
        a.kana_any_key as kana_value
    from pairs
    inner join records as a
        on pairs.record_a = a.record_key
    inner join records as b
        on pairs.record_b = b.record_key

),

final as (

    select
        {{ dbt.concat(['compared.record_a', "'|'", 'compared.record_b']) }} as pair_id,
        compared.record_a,
        compared.record_b,
        {%- for comparison in identity_comparisons() %}
        compared.{{ comparison }}_level,
        {%- endfor %}
        case compared.name_level
            when {{ name_levels.index('kanji') }} then coalesce(name_key_term_frequencies.tf_adjustment, 0)
            when {{ name_levels.index('kana') }} then coalesce(kana_any_key_term_frequencies.tf_adjustment, 0)
            else 0
        end as name_tf_adjustment
    from compared
    left join name_key_term_frequencies
        on compared.name_value = name_key_term_frequencies.key_value
    left join kana_any_key_term_frequencies
        on compared.kana_value = kana_any_key_term_frequencies.key_value

)

select * from final
