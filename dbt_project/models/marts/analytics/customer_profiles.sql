{# The analysts' customer table: no name, email, phone, address or birthday; age band,
   prefecture and consent instead. Erased people are left out. #}

with

customers as (

    select * from {{ ref('dim_customers') }}

),

deliverable as (

    select * from {{ ref('deliverable_customers') }}

),

channel_flags as (

    select
        person_id,
        max(case when channel = 'email' then 1 else 0 end) = 1 as is_email_deliverable,
        max(case when channel = 'line' then 1 else 0 end) = 1 as is_line_deliverable,
        max(case when channel = 'sms' then 1 else 0 end) = 1 as is_sms_deliverable,
        max(case when channel = 'dm' then 1 else 0 end) = 1 as is_dm_deliverable,
        max(case when channel = 'call' then 1 else 0 end) = 1 as is_call_deliverable
    from deliverable
    group by person_id

),

final as (

    select
        customers.person_id,
        customers.gender,
        case
            when customers.birth_date is null then 'unknown'
            else
                cast(
                    cast(
                        floor(({{ dbt.datediff('customers.birth_date', dbt.current_timestamp(), 'year') | trim }}) / 10)
                        * 10 as {{ dbt.type_int() }}
                    ) as {{ dbt.type_string() }}
                ) || 's'
        end as age_band,
        customers.prefecture,
        customers.has_ecommerce_account,
        customers.has_oms_account,
        customers.has_member_card,
        customers.is_line_friend,
        coalesce(channel_flags.is_email_deliverable, false) as is_email_deliverable,
        coalesce(channel_flags.is_line_deliverable, false) as is_line_deliverable,
        coalesce(channel_flags.is_sms_deliverable, false) as is_sms_deliverable,
        coalesce(channel_flags.is_dm_deliverable, false) as is_dm_deliverable,
        coalesce(channel_flags.is_call_deliverable, false) as is_call_deliverable,
        customers.person_created_at
    from customers
    left join channel_flags
        on customers.person_id = channel_flags.person_id
    where not customers.is_erased
        and not customers.is_test_account

)

select * from final
