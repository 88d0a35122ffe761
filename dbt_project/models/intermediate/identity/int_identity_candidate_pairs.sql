{# The probabilistic layer's candidate pairs (docs/identity.md, step 5): two records that share a
   value of any blocking key (vars.identity.probabilistic.blocking_keys; values held by more than
   max_block_size records block nothing), with the level of every comparison
   (identity_comparisons) and the term-frequency adjustment of the name: agreeing on a rare
   name is stronger evidence than agreeing on a common one, by log2(u / tf), where tf is the
   share of records with that value and u the chance that two random records agree at all. #}

{%- set probabilistic = var('identity').probabilistic %}

with

records as (

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
        case
            when a.name_key = b.name_key or a.name_key = b.name_swapped_key or a.name_swapped_key = b.name_key
                then 3
            when a.kana_any_key = b.kana_any_key
                or a.kana_any_key = coalesce(b.kana_swapped_key, b.reading_swapped_key)
                or coalesce(a.kana_swapped_key, a.reading_swapped_key) = b.kana_any_key
                then 2
            {#- A kana among the kanji name's other candidate readings (陽菜: ヒナ as well as ハルナ). #}
            when a.kana_key in ({{ reading_keys('b') }}) or b.kana_key in ({{ reading_keys('a') }}) then 1
            when a.kana_any_key is not null and b.kana_any_key is not null then 0
            when a.name_key is not null and b.name_key is not null then 0
        end as name_level,
        case
            when a.birth_key = b.birth_key then 1
            when a.birth_key <> b.birth_key then 0
        end as birth_level,
        case
            when a.postal_key = b.postal_key then 2
            when a.postal_area_key = b.postal_area_key then 1
            when a.postal_key <> b.postal_key then 0
        end as postal_level,
        case
            when a.address_key = b.address_key then 1
            when a.address_key <> b.address_key then 0
        end as address_level,
        case
            when a.mobile_key = b.mobile_key then 2
            when a.landline_key = b.landline_key then 1
            when coalesce(a.mobile_key, a.landline_key) is not null
                and coalesce(b.mobile_key, b.landline_key) is not null then 0
        end as phone_level,
        case
            when a.email_key = b.email_key then 1
            when a.email_key <> b.email_key then 0
        end as email_level,
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
            when 3 then coalesce(name_key_term_frequencies.tf_adjustment, 0)
            when 2 then coalesce(kana_any_key_term_frequencies.tf_adjustment, 0)
            else 0
        end as name_tf_adjustment
    from compared
    left join name_key_term_frequencies
        on compared.name_value = name_key_term_frequencies.key_value
    left join kana_any_key_term_frequencies
        on compared.kana_value = kana_any_key_term_frequencies.key_value

)

select * from final
