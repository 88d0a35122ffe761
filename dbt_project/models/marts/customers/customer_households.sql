{# Households: people linked by a shared phone, email or address while their names say they
   are different people (int_identity_household_links), grouped by connected components. One row
   per person. Marketing sends one DM per household: to its household_contact. A component larger
   than vars.identity.max_household_size (a shared value the junk checks missed) is not a
   household: its people stay on their own.
   household_id is stable across builds the way person IDs are (int_identity_person_ids): the
   table reads its own previous version. An old household ID goes to the household holding most
   of its old members (then the larger household); a household that holds several keeps the one
   most of its members had. A new household's ID is "H" and the end of its smallest member's
   person ID, salted with a keyed hash when that ID is or was in use, so a household keeps its ID
   when that member leaves and no ID is ever given to two households. #}

{%- set identity = var('identity') %}
{%- set rounds = identity.propagation_rounds %}
{%- set previous = adapter.get_relation(this.database, this.schema, this.identifier) %}

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

previous_households as (

    {% if previous is not none %}
    select person_id, household_id
    from {{ prior_version(this) }}
    {% else %}
    select
        cast(null as {{ dbt.type_string() }}) as person_id,
        cast(null as {{ dbt.type_string() }}) as household_id
    where 1 = 0
    {% endif %}

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

claims as (

    select
        ranked.household_key,
        previous_households.household_id,
        max(ranked.household_size) as household_size,
        count(*) as members_held
    from ranked
    inner join previous_households
        on ranked.person_id = previous_households.person_id
    group by ranked.household_key, previous_households.household_id

),

owned as (

    {# An old ID goes to the household holding most of its old members, then the larger one. #}
    select
        household_key,
        household_id,
        members_held,
        row_number() over (
            partition by household_id order by members_held desc, household_size desc, household_key asc
        ) as claim_rank
    from claims

),

kept as (

    {# A household owning several old IDs (two merged) keeps the one most of its members had. #}
    select
        household_key,
        household_id,
        row_number() over (
            partition by household_key order by members_held desc, household_id asc
        ) as keep_rank
    from owned
    where claim_rank = 1

),

minted as (

    select
        household_key,
        {{ dbt.concat(["'H'", dbt.right('household_key', 19)]) }} as first_choice
    from (select distinct household_key from ranked) as households

),

taken as (

    select distinct household_id from previous_households

),

household_ids as (

    select
        minted.household_key,
        coalesce(
            kept.household_id,
            case
                when taken.household_id is null then minted.first_choice
                else {{ dbt.concat([
                    "'H'",
                    dbt.right(match_key('household', dbt.concat(['minted.household_key', "'|'", 'minted.first_choice'])), 19),
                ]) }}
            end
        ) as household_id
    from minted
    left join kept
        on minted.household_key = kept.household_key
        and kept.keep_rank = 1
    left join taken
        on minted.first_choice = taken.household_id

),

final as (

    select
        ranked.person_id,
        household_ids.household_id,
        ranked.household_size,
        ranked.household_rank = 1 as is_household_contact
    from ranked
    inner join household_ids
        on ranked.household_key = household_ids.household_key

)

select * from final
