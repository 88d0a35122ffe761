{# Key values held by more records than one person plausibly has (vars.identity.max_group_size):
   shared family landlines, a shop's own address, placeholders. They link nothing; this table
   lets a data steward see them and add the real ones to the identity_blocked_values seed. #}

{%- set identity = var('identity') %}

with

records as {{ inlined_cte() }} (

    select * from {{ ref('int_identity_records') }}

),

{% for rule in identity.rules %}
{{ rule.name }}_shared as (

    select
        '{{ rule.name }}' as rule,
        {{ dbt.concat(rule['keys'] | list) if rule['keys'] | length > 1 else rule['keys'][0] }} as key_value,
        count(*) as record_count
    from records
    where {{ rule['keys'][0] }} is not null
        {%- for key in rule['keys'][1:] %}
        and {{ key }} is not null
        {%- endfor %}
    group by {{ rule['keys'] | join(', ') }}
    having count(*) > {{ identity.max_group_size }}

){{ "," if not loop.last }}
{% endfor %}

{% for rule in identity.rules %}
select * from {{ rule.name }}_shared
{% if not loop.last %}union all{% endif %}
{% endfor %}
