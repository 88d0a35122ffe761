{# 誕生日 (birthday): customers whose birthday falls in the month of the as-of day. A daily run
   lists the whole month, so triggered_on is the first day of that month (one birthday message per
   person and month); birthday_day says on which day of the month to send it. Only the month and
   day of the birth date are read from dim_customers (personal data: the year is not copied). #}

with

traits as (

    select * from {{ ref('customer_traits') }}

),

birthdays as (

    select
        person_id,
        cast(extract(month from birth_date) as {{ dbt.type_int() }}) as birthday_month,
        cast(extract(day from birth_date) as {{ dbt.type_int() }}) as birthday_day
    from {{ ref('dim_customers') }}
    where birth_date is not null

),

final as (

    select
        traits.person_id,
        'birthday_this_month' as trigger,
        cast({{ dbt.date_trunc('month', as_of_date()) }} as date) as triggered_on,
        {{ as_of_date() }} as as_of_date,
        traits.birth_month,
        birthdays.birthday_day,
        traits.age_band,
        traits.frequency,
        traits.points_balance
    from traits
    left join birthdays
        on traits.person_id = birthdays.person_id
    where traits.birth_month = extract(month from {{ as_of_date() }})

)

select * from final
