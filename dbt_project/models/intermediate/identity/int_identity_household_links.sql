{# Two people who share a contact but are not one person: a household (docs/identity.md). A link
   whose rule joined two records on a phone, an email or an address while their names disagree
   (vetoed name_differs, kana_differs or reading_differs) is such a pair, and so are two people
   with records at the same address. Households are recorded, never merged: a household link
   never joins person IDs. Address values held by more than vars.identity.max_household_size
   people (a building's shared address, a placeholder) link nothing. #}

{%- set identity = var('identity') %}

with

edges as (

    select * from {{ ref('int_identity_edges') }}

),

records as {{ inlined_cte() }} (

    select * from {{ ref('int_identity_records') }}

),

person_ids as (

    select * from {{ ref('int_identity_person_ids') }}

),

vetoed_contacts as (

    select
        a.person_id as person_a,
        b.person_id as person_b,
        edges.rule as link
    from edges
    inner join person_ids as a
        on edges.record_a = a.record_key
    inner join person_ids as b
        on edges.record_b = b.record_key
    where
        not edges.accepted
        and edges.veto_reason in ('name_differs', 'kana_differs', 'reading_differs')
        and a.person_id <> b.person_id

),

addressed as (

    select
        records.address_key,
        person_ids.person_id
    from records
    inner join person_ids
        on records.record_key = person_ids.record_key
    where records.address_key is not null

),

shared_addresses as (

    select address_key
    from addressed
    group by address_key
    having
        count(distinct person_id) between 2 and {{ identity.max_household_size }}

),

same_address as (

    select distinct
        a.person_id as person_a,
        b.person_id as person_b,
        'address' as link
    from addressed as a
    inner join shared_addresses
        on a.address_key = shared_addresses.address_key
    inner join addressed as b
        on a.address_key = b.address_key
    where a.person_id <> b.person_id

),

links as (

    select
        person_a,
        person_b,
        link
    from vetoed_contacts
    union all
    select
        person_a,
        person_b,
        link
    from same_address

),

ordered as (

    select
        case when person_a < person_b then person_a else person_b end as person_a,
        case when person_a < person_b then person_b else person_a end as person_b,
        link
    from links

),

final as (

    select
        person_a,
        person_b,
        min(link) as first_link,
        count(distinct link) as link_count
    from ordered
    group by person_a, person_b

)

select * from final
