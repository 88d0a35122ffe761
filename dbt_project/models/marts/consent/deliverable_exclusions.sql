{# Why a person may not be contacted on a channel (除外管理): one row per person, channel and
   reason. Every person and channel that is not in deliverable_customers is here with at least
   one reason. Reason codes: no_consent, opted_out, blacklisted, erased, test_account,
   no_contact_address. #}

with

ledger as (

    select * from {{ ref('consent_ledger') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

by_consent as (

    select
        person_id,
        channel,
        case consent_status when 'opted_out' then 'opted_out' else 'no_consent' end as reason_code,
        coalesce(evidence, 'no consent event on any system') as reason_detail,
        status_since as since
    from ledger
    where consent_status <> 'opted_in'

),

{# Reasons that hold for a person on every channel. #}
person_flags as (

    select
        'blacklisted' as reason_code,
        'blacklisted in the OMS customer master' as reason_detail
    union all
    select
        'erased' as reason_code,
        'erasure request (削除依頼)' as reason_detail
    union all
    select
        'test_account' as reason_code,
        'staff test account' as reason_detail

),

by_person as (

    select
        customers.person_id,
        ledger.channel,
        person_flags.reason_code,
        person_flags.reason_detail,
        cast(null as timestamp) as since
    from customers
    inner join ledger
        on customers.person_id = ledger.person_id
    inner join person_flags
        on (person_flags.reason_code = 'blacklisted' and customers.is_blacklisted)
        or (person_flags.reason_code = 'erased' and customers.is_erased)
        or (person_flags.reason_code = 'test_account' and customers.is_test_account)

),

by_address as (

    select
        ledger.person_id,
        ledger.channel,
        'no_contact_address' as reason_code,
        'no address for this channel in the golden record' as reason_detail,
        cast(null as timestamp) as since
    from ledger
    inner join customers
        on ledger.person_id = customers.person_id
    where not customers.is_erased
        and case ledger.channel
            when 'email' then customers.email is null
            when 'line' then customers.line_user_id is null
            when 'sms' then customers.phone is null or not {{ is_mobile_e164('customers.phone') }}
            when 'dm' then customers.address is null or customers.postal_code is null
            when 'call' then customers.phone is null
        end

),

unioned as (

    select * from by_consent
    union all
    select * from by_person
    union all
    select * from by_address

),

final as (

    select
        {{ dbt.concat(['person_id', "':'", 'channel', "':'", 'reason_code']) }} as exclusion_id,
        *
    from unioned

)

select * from final
