{# The people the segment, retention and CLV marts count: everyone in dim_customers except test
   accounts and erased people. One population for every mart that counts customers, so
   f_retention, cohorts, deciles, CLV and customer_traits agree on who is a customer. #}

{{ config(materialized='view') }}

with

customers as (

    select * from {{ ref('dim_customers') }}

),

final as (

    select person_id
    from customers
    where not is_test_account
        and not is_erased

)

select * from final
