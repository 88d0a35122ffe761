-- depends_on: {{ ref('deliverable_customers') }}
-- depends_on: {{ ref('suppressed_contact_keys') }}
{# Consent build marks (docs/consent.md, docs/reliability.md #16): for every raw table that carries
   consent, the latest landing time (`_loaded_at`) among the rows this build read, and how many
   it read. Built after deliverable_customers and suppressed_contact_keys, and skipped with them
   when they fail, so the marks always describe the consent marts in the warehouse. An export
   checks the rows landed after these marks before anything leaves
   (yorisoi.activation.selection.sendtime).

   The marks are taken from the staging models the consent marts read. The staging tables hold
   exactly the rows the build read; the staging views (email provider sends, LINE events) read
   raw when queried, which on DuckDB is the same state, because the build holds the warehouse's
   only write lock from start to end. #}

with

ecommerce_customers as (

    select loaded_at from {{ ref('stg_ecommerce__customers') }}

),

oms_customers as (

    select loaded_at from {{ ref('stg_oms__customers') }}

),

callcenter_requests as (

    select loaded_at from {{ ref('stg_callcenter__requests') }}

),

esp_sends as (

    select loaded_at from {{ ref('stg_esp__sends') }}

),

line_friend_events as (

    select loaded_at from {{ ref('stg_line__friend_events') }}

),

marks as (

    select
        'ecommerce__customers' as source_table,
        max(loaded_at) as loaded_through,
        count(*) as rows_seen
    from ecommerce_customers

    union all

    select
        'oms__customers' as source_table,
        max(loaded_at) as loaded_through,
        count(*) as rows_seen
    from oms_customers

    union all

    select
        'sftp__callcenter_requests' as source_table,
        max(loaded_at) as loaded_through,
        count(*) as rows_seen
    from callcenter_requests

    union all

    select
        'sftp__esp_sends' as source_table,
        max(loaded_at) as loaded_through,
        count(*) as rows_seen
    from esp_sends

    union all

    select
        'sftp__line_friends' as source_table,
        max(loaded_at) as loaded_through,
        count(*) as rows_seen
    from line_friend_events

),

final as (

    select
        source_table,
        loaded_through,
        rows_seen,
        {{ dbt.current_timestamp() }} as marked_at
    from marks

)

select * from final
