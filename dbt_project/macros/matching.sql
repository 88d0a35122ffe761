{# Matching campaign sends to what the channels reported (ESP log, SMS receipts, tracked clicks)
   and orders to the sends that touched them: a time window, then one row per key. #}

{# `at` within [`start`, `start` + `amount` `datepart`): a report or order after a send. #}
{% macro within_window(at, start, amount, datepart) -%}
    {{ at }} >= {{ start }}
    and {{ at }} < {{ dbt.dateadd(datepart, amount, start) }}
{%- endmacro %}

{# The rows of `candidates` (a CTE) that rank first within `partition_by` by `order_by` (an order
   that breaks every tie, so the same row wins on every engine and build), with their rank
   `rank_name` = 1. #}
{% macro first_match(candidates, partition_by, order_by, rank_name='nth_match') -%}
    select *
    from (
        select
            {{ candidates }}.*,
            row_number() over (
                partition by {{ partition_by }} order by {{ order_by }}
            ) as {{ rank_name }}
        from {{ candidates }}
    ) as ranked
    where {{ rank_name }} = 1
{%- endmacro %}
