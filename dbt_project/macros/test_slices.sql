{# Data tests on the rows no passing test has read yet (docs/scale.md, "Data tests on the rows a
   build wrote").

   built_at(): the build's start (dbt's run_started_at, UTC), stamped on every row an incremental
   model writes. A full build stamps every row with it; an incremental build stamps the rows it
   inserted or replaced, and the rows it did not touch keep the stamp of the build that wrote them.

   A run whose data tests with `where: "__untested_rows__"` on a model all pass records its start
   in dbt_test_slices.tested_through (on-run-end: record_tested_slices). Those tests read only the
   model's rows stamped after the newest such record: after a full build, the whole table; after
   an incremental build that follows a passing one, the rows it wrote; after a failed build, or
   its retry, every row since the last pass, so a failing row keeps failing until it is fixed.
   dbt renders a test's `where` without the project's macros, hence the placeholder, expanded
   here (dbt's own get_where_subquery, which this replaces, is used for every other `where`).
   --vars '{test_whole_tables: true}' tests the whole tables. #}
{% macro built_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro test_slices_relation() -%}
    dbt_test_slices.tested_through
{%- endmacro %}

{# on-run-start: the table of passing runs, outside the schemas dbt builds (a full rebuild and
   an incremental build of the same day hold the same marts, not the same history of runs). #}
{% macro create_test_slices() -%}
    {%- if execute -%}
        {%- do run_query('create schema if not exists dbt_test_slices') -%}
        {%- do run_query(
            'create table if not exists ' ~ test_slices_relation()
            ~ ' (model_name ' ~ dbt.type_string() ~ ', tested_through ' ~ dbt.type_timestamp() ~ ')'
        ) -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{# on-run-end: for each model whose sliced tests ran in this run and all passed, the run's start. #}
{% macro record_tested_slices(results) -%}
    {%- if execute -%}
        {%- set passed = {} -%}
        {%- for result in results -%}
            {%- set node = result.node -%}
            {%- if node.resource_type == 'test' and '__untested_rows__' in (node.config.where or '')
                and node.attached_node -%}
                {%- set model = node.attached_node.split('.')[-1] -%}
                {%- do passed.update({model: passed.get(model, true) and result.status in ('pass', 'warn')}) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for model, ok in passed.items() if ok -%}
            {%- do run_query(
                'insert into ' ~ test_slices_relation() ~ " values ('" ~ model ~ "', " ~ built_at() ~ ')'
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where and '__untested_rows__' in where -%}
        {%- set untested -%}
            {%- if var('test_whole_tables', false) -%}
                (1 = 1)
            {%- else -%}
                (built_at > coalesce(
                    (select max(tested_through) from {{ test_slices_relation() }}
                     where model_name = '{{ relation.identifier }}'),
                    cast('1900-01-01 00:00:00' as {{ dbt.type_timestamp() }})))
            {%- endif -%}
        {%- endset -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where | replace('__untested_rows__', untested) ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(adapter.dispatch('get_where_subquery', 'dbt')(relation)) -%}
{%- endmacro %}
