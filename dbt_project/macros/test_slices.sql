{# Data tests on the rows the latest build wrote (docs/scale.md, "Data tests on the day's rows").

   built_at(): the build's start (dbt's run_started_at, UTC), stamped on every row an incremental
   model writes. A full build stamps every row with it; an incremental build stamps the rows it
   inserted or replaced, and the rows it did not touch keep the stamp of the build that wrote them.

   A data test whose config has `where: "__latest_build__"` reads only the rows with the newest
   stamp: after a full build, the whole table; after an incremental one, the rows it wrote. dbt
   renders a test's `where` without the project's macros, hence the placeholder, expanded here
   (dbt's own get_where_subquery, which this replaces, is used for every other `where`).
   --vars '{test_whole_tables: true}' tests the whole table instead (a re-check after a failed
   morning: the next build's slice no longer holds the rows that failed). #}
{% macro built_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where and '__latest_build__' in where -%}
        {%- set latest -%}
            {%- if var('test_whole_tables', false) -%}
                (1 = 1)
            {%- else -%}
                (built_at = (select max(built_at) from {{ relation }}))
            {%- endif -%}
        {%- endset -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where | replace('__latest_build__', latest) ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(adapter.dispatch('get_where_subquery', 'dbt')(relation)) -%}
{%- endmacro %}
