{# Households: people linked by a shared phone, email or address while their names say they
   are different people (int_identity_household_links), grouped by connected components. One row
   per person. Marketing sends one DM per household: to its household_contact. A component larger
   than vars.identity.max_household_size (a shared value the junk checks missed) is not a
   household: its people stay on their own. #}

{%- set identity = var('identity') %}
{%- set rounds = identity.propagation_rounds %}

with
{%- set inputs %}

people as (

    select distinct
        person_id,
        person_created_at
    from {{ ref('int_identity_person_ids') }}

),

household_edges as (

    select
        person_a as record_a,
        person_b as record_b
    from {{ ref('int_identity_household_links') }}

)
{%- endset %}
{{ inputs }},

{{ connected_components('household_edges', rounds, 'households', inputs) }},

grouped as (

    select
        people.person_id,
        people.person_created_at,
        coalesce(households_round_{{ rounds }}.label, people.person_id) as component
    from people
    left join households_round_{{ rounds }}
        on people.person_id = households_round_{{ rounds }}.node

),

sized as (

    select
        component,
        count(*) as component_size
    from grouped
    group by component

),

assigned as (

    select
        grouped.person_id,
        grouped.person_created_at,
        case
            when sized.component_size <= {{ identity.max_household_size }} then grouped.component
            else grouped.person_id
        end as household_key
    from grouped
    inner join sized
        on grouped.component = sized.component

),

ranked as (

    select
        person_id,
        household_key,
        count(*) over (partition by household_key) as household_size,
        row_number() over (
            partition by household_key order by person_created_at, person_id
        ) as household_rank
    from assigned

),

final as (

    select
        person_id,
        {{ dbt.concat(["'H'", dbt.right('household_key', 19)]) }} as household_id,
        household_size,
        household_rank = 1 as is_household_contact
    from ranked

)

select * from final
