{# Data tests on the rows no passing run of the test has read yet (docs/scale.md, "Data tests on
   the rows a build wrote").

   built_at(): the build's start (dbt's run_started_at, UTC), stamped on every row an incremental
   model writes. A full build stamps every row with it; an incremental build stamps the rows it
   inserted or replaced, and the rows it did not touch keep the stamp of the build that wrote them.

   Each data test with `where: "__untested_rows__"` that passes records the run's start in
   dbt_test_slices.test_passes, under its own node ID (on-run-end: record_tested_slices); it reads
   only the model's rows stamped after its own newest record. So: after a full build, the whole
   table; after an incremental build that follows a passing run, the rows it wrote; after a run in
   which the test failed or warned, or did not run, every row since its last pass, so a failing
   row keeps failing until it is fixed whichever other tests ran or passed meanwhile; a new test
   reads the whole table once (a pass under a warn_if / error_if threshold that some rows failed
   is not recorded). A pass is recorded under the test's node ID, which dbt derives from the
   test's name and arguments, not its `where` or its macro's SQL: after changing what a sliced
   test checks that way, run it once with test_whole_tables. The records are per target schema: two targets sharing a metastore
   (Spark) keep their own. dbt renders a test's `where` without the project's macros, hence the
   placeholder, expanded here (dbt's own get_where_subquery, which this replaces, is used for
   every other `where`). --vars '{test_whole_tables: true}' tests the whole tables. #}
{% macro built_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro test_slices_relation() -%}
    dbt_test_slices.test_passes
{%- endmacro %}

{# on-run-start: the table of passing runs, outside the schemas dbt builds (a full rebuild and
   an incremental build of the same day hold the same marts, not the same history of runs). #}
{% macro create_test_slices() -%}
    {%- if execute -%}
        {%- do run_query('create schema if not exists dbt_test_slices') -%}
        {%- do run_query(
            'create table if not exists ' ~ test_slices_relation()
            ~ ' (test_id ' ~ dbt.type_string() ~ ', target_schema ' ~ dbt.type_string()
            ~ ', passed_at ' ~ dbt.type_timestamp() ~ ')'
        ) -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{# on-run-end: each sliced test that passed in this run, with the run's start. #}
{% macro record_tested_slices(results) -%}
    {%- if execute -%}
        {%- set rows = [] -%}
        {%- for result in results -%}
            {%- set node = result.node -%}
            {%- if node.resource_type == 'test' and '__untested_rows__' in (node.config.where or '')
                and result.status == 'pass' and not result.failures -%}
                {%- do rows.append("('" ~ node.unique_id ~ "', '" ~ target.schema ~ "', " ~ built_at() ~ ")") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if rows -%}
            {%- do run_query('insert into ' ~ test_slices_relation() ~ ' values ' ~ rows | join(', ')) -%}
        {%- endif -%}
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
                    (select max(passed_at) from {{ test_slices_relation() }}
                     where test_id = '{{ model.unique_id }}' and target_schema = '{{ target.schema }}'),
                    cast('1900-01-01 00:00:00' as {{ dbt.type_timestamp() }})))
            {%- endif -%}
        {%- endset -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where | replace('__untested_rows__', untested) ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(adapter.dispatch('get_where_subquery', 'dbt')(relation)) -%}
{%- endmacro %}
