{# The key of a source record, '<source>:<id>' (ecommerce:1042, oms:C-00123, pos:<card number>):
   the identifier that crosses boundaries. Identity resolution keys its records by it, consent
   events and the golden record point at them with it, orders and order lines are keyed the same
   way, and data stewards write it in the identity_do_not_merge seed. Defined once here so every
   model writes the same text. Null when the id is null (dbt.concat on DuckDB and Spark alike).

   record_key('oms', 'customer_id'): the source is known, by its name.
   record_key_from_column('unioned.source', 'unioned.source_id'): the source is a column (a
   union of several sources). #}
{% macro record_key(source_name, id_column) -%}
    {{ dbt.concat(["'" ~ source_name ~ ":'", id_column]) }}
{%- endmacro %}

{% macro record_key_from_column(source_column, id_column) -%}
    {{ dbt.concat([source_column, "':'", id_column]) }}
{%- endmacro %}
