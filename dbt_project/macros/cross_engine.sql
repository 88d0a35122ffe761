{# Engine-specific SQL lives here, behind adapter.dispatch, so models stay portable between
   DuckDB (the embedded default) and Spark. #}

{# A timestamp without zone, written in the brand's local time (back-office systems), as an
   absolute timestamp. #}
{% macro local_to_timestamp(column) -%}
    {{ return(adapter.dispatch('local_to_timestamp', 'yorisoi')(column)) }}
{%- endmacro %}

{% macro default__local_to_timestamp(column) -%}
    timezone('{{ var("local_time_zone") }}', cast({{ column }} as timestamp))
{%- endmacro %}

{% macro spark__local_to_timestamp(column) -%}
    to_utc_timestamp(cast({{ column }} as timestamp), '{{ var("local_time_zone") }}')
{%- endmacro %}

{# An absolute timestamp (DuckDB timestamptz, Spark timestamp) as text, the same on both engines:
   DuckDB's cast, e.g. 2024-11-02 10:32:57.12+00 (fractional seconds only when not zero, then the
   offset of the session time zone, UTC in profiles.yml and the Spark runner). Spark's cast leaves
   the offset out. #}
{% macro timestamp_tz_to_string(column) -%}
    {{ return(adapter.dispatch('timestamp_tz_to_string', 'yorisoi')(column)) }}
{%- endmacro %}

{% macro default__timestamp_tz_to_string(column) -%}
    cast({{ column }} as {{ dbt.type_string() }})
{%- endmacro %}

{% macro spark__timestamp_tz_to_string(column) -%}
    concat(cast({{ column }} as string), date_format({{ column }}, 'x'))
{%- endmacro %}

{# Normalisation and keyed hashing are Python functions (yorisoi.privacy.normalize / keys),
   registered as vectorised UDFs under the same names on every engine: on DuckDB by the
   dbt-duckdb plugin yorisoi.privacy.duckdb_udfs. One implementation, so a key computed on one
   engine equals the key computed on the other. #}
{% macro norm_email(column) -%} yorisoi_norm_email({{ column }}) {%- endmacro %}
{% macro norm_phone(column) -%} yorisoi_norm_phone({{ column }}) {%- endmacro %}
{% macro norm_kana(column) -%} yorisoi_norm_kana({{ column }}) {%- endmacro %}
{% macro fold_kana(column) -%} yorisoi_fold_kana({{ column }}) {%- endmacro %}
{% macro norm_postal(column) -%} yorisoi_norm_postal({{ column }}) {%- endmacro %}
{% macro norm_name(column) -%} yorisoi_norm_name({{ column }}) {%- endmacro %}
{# Candidate readings of a (kanji) name as folded katakana, most likely first, joined by "|"
   (yorisoi.privacy.readings). #}
{% macro name_readings(column) -%} yorisoi_name_readings({{ column }}) {%- endmacro %}

{# Keyed HMAC-SHA256 of a normalised value, domain-separated by purpose so that the same text
   used as an email and as a name never gives the same key. The secret never appears in SQL. #}
{% macro match_key(purpose, column) -%}
    {{ return(adapter.dispatch('match_key', 'yorisoi')(dbt.concat(["'" ~ purpose ~ "|'", column]))) }}
{%- endmacro %}

{% macro default__match_key(value) -%}
    yorisoi_match_key({{ value }})
{%- endmacro %}

{# On DuckDB, HMAC-SHA256 with the native sha256 over the key pads the dbt-duckdb plugin puts in
   session variables: the same value as yorisoi_match_key, without a Python call per row. #}
{% macro duckdb__match_key(value) -%}
    case
        when getvariable('yorisoi_hmac_outer') is null
            then error('no match key: set YORISOI_MATCH_KEY, YORISOI_MATCH_KEY_FILE or the Airflow connection yorisoi_match_key')
        else sha256(getvariable('yorisoi_hmac_outer') || unhex(sha256(getvariable('yorisoi_hmac_inner') || encode({{ value }}))))
    end
{%- endmacro %}

{# Japanese mobile numbers (070 / 080 / 090) in E.164: they belong to one person, landlines
   to a household. #}
{% macro is_mobile_e164(column) -%}
    ({{ column }} like '+8170%' or {{ column }} like '+8180%' or {{ column }} like '+8190%')
{%- endmacro %}

{# A CTE read more than once, computed once: DuckDB needs to be told. Spark has no such clause:
   it inlines every CTE into each place that reads it, so a chain of CTEs that each read earlier
   ones more than once grows exponentially; see spark__connected_components below. #}
{% macro materialized_cte() -%}
    {{ return(adapter.dispatch('materialized_cte', 'yorisoi')()) }}
{%- endmacro %}

{% macro default__materialized_cte() -%}{%- endmacro %}

{% macro duckdb__materialized_cte() -%} materialized {%- endmacro %}

{# The opposite: a CTE that only renames a table (`select * from ref(...)`), read in place by
   each reader. DuckDB materialises a CTE read more than once by itself, all of its columns:
   int_identity_records' keys of 64 characters, 880 MB at M, copied before every identity
   model and read back (spilled under a memory limit) by each of its readers, where a scan of the
   table reads only the columns each reader uses. Spark inlines every CTE anyway. #}
{% macro inlined_cte() -%}
    {{ return(adapter.dispatch('inlined_cte', 'yorisoi')()) }}
{%- endmacro %}

{% macro default__inlined_cte() -%}{%- endmacro %}

{% macro duckdb__inlined_cte() -%} not materialized {%- endmacro %}

{# Connected components (macros/connected_components.sql) for the caller's CTE list.
   `inputs` is the text of the caller's CTEs that `edges` needs (a string or a list of strings),
   unused except on Spark. The result is the CTE <prefix>_round_<rounds>(node, label). #}
{% macro connected_components(edges, rounds, prefix, inputs) -%}
    {{ return(adapter.dispatch('connected_components', 'yorisoi')(edges, rounds, prefix, inputs)) }}
{%- endmacro %}

{% macro default__connected_components(edges, rounds, prefix, inputs) -%}
    {{ return(connected_components_ctes(edges, rounds, prefix)) }}
{%- endmacro %}

{# Spark inlines CTEs (above): int_identity_clusters as one query does not even get through
   analysis (out of memory with the default 1 GB driver, still analysing after 5 minutes with
   8 GB, at scale XS; a single round already takes about 20 s to plan). So each CTE of the chain is
   computed on its own into a scratch table, <model>__<cte>, in the model's schema, and the query
   reads the last one. Same SQL, same result, one step at a time. The scratch tables are built
   while the model compiles (dbt run, build or compile) and replaced on the next run; all but the
   result are dropped once it is built. #}
{% macro spark__connected_components(edges, rounds, prefix, inputs) -%}
    {%- set chain = connected_components_ctes(edges, rounds, prefix) -%}
    {#- The chain's CTEs start at the beginning of a line: "<name> as (" -#}
    {%- set parts = modules.re.split('(?m)^(\\w+) as\\s*\\(\\s*$', chain) -%}
    {%- set ctes = [] -%}
    {%- for i in range(1, parts | length, 2) -%}
        {%- set body = parts[i + 1].rstrip().rstrip(',').rstrip() -%}
        {%- do ctes.append((parts[i], body[:-1])) -%}
    {%- endfor -%}
    {%- if ctes | length == 0 or ctes[-1][0] != prefix ~ '_round_' ~ rounds -%}
        {%- do exceptions.raise_compiler_error('spark__connected_components: cannot split the CTEs of connected_components_ctes') -%}
    {%- endif -%}
    {%- set context = (inputs if inputs is string else inputs | join(',\n')) -%}
    {%- set file_format = config.get('file_format') or 'parquet' -%}
    {%- set scratch = {} -%}
    {%- for name, body in ctes -%}
        {%- do scratch.update({name: this.incorporate(path={'identifier': this.identifier ~ '__' ~ name}, type='table')}) -%}
    {%- endfor -%}
    {%- if execute -%}
        {%- set done = [] -%}
        {%- for name, body in ctes -%}
            {%- do run_query('drop table if exists ' ~ scratch[name]) -%}
            {%- set build -%}
create table {{ scratch[name] }} using {{ file_format }} as
with
{{ context }}
{%- for earlier in done %},
{{ earlier }} as (select * from {{ scratch[earlier] }})
{%- endfor %}
{{ body }}
            {%- endset -%}
            {%- do run_query(build) -%}
            {%- do done.append(name) -%}
        {%- endfor -%}
        {%- for name in done[:-1] -%}
            {%- do run_query('drop table if exists ' ~ scratch[name]) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set result = ctes[-1][0] -%}
    {{ return(result ~ ' as (\n    select node, label from ' ~ scratch[result] ~ '\n)') }}
{%- endmacro %}

{# The materialization of a model that calls the yorisoi_* functions and would otherwise be a
   view. Spark cannot store a view that calls a temporary function, and Python UDFs only exist as
   temporary (session) functions there, so on Spark such a model is a table. #}
{% macro view_calling_udfs() -%}
    {{ return(adapter.dispatch('view_calling_udfs', 'yorisoi')()) }}
{%- endmacro %}

{% macro default__view_calling_udfs() -%}
    {{ return('view') }}
{%- endmacro %}

{% macro spark__view_calling_udfs() -%}
    {{ return('table') }}
{%- endmacro %}

{# A table model's own previous version, for a model that reads it while rebuilding itself
   (int_identity_person_ids and customer_households keep person and household IDs stable that
   way). dbt-duckdb builds the new table
   aside and swaps it in, so the query reads the relation itself. dbt-spark drops a table before
   creating it again (unless both are Delta or Iceberg), so on Spark the previous version is
   first copied to a scratch table, <model>__previous, while the model compiles. #}
{% macro prior_version(relation) -%}
    {{ return(adapter.dispatch('prior_version', 'yorisoi')(relation)) }}
{%- endmacro %}

{% macro default__prior_version(relation) -%}
    {{ return(relation) }}
{%- endmacro %}

{% macro spark__prior_version(relation) -%}
    {%- set copy = relation.incorporate(path={'identifier': relation.identifier ~ '__previous'}, type='table') -%}
    {%- if execute -%}
        {%- do run_query('drop table if exists ' ~ copy) -%}
        {%- do run_query('create table ' ~ copy ~ ' using parquet as select * from ' ~ relation) -%}
    {%- endif -%}
    {{ return(copy) }}
{%- endmacro %}

{# Grants on Spark. The analysts' models carry grants (dbt_project.yml) to var('analyst_roles'),
   an empty list by default, which dbt reads as "revoke whatever is granted" and, on every
   rebuild, checks with SHOW GRANTS: a statement open-source Spark does not have (grants belong
   to a governed catalog: Unity Catalog, Ranger). So with no grantee nothing is granted nor
   checked; with grantees dbt's default applies (and fails on a catalog without grants). #}
{% macro spark__apply_grants(relation, grant_config, should_revoke=True) %}
    {%- set grantees = [] -%}
    {%- for privilege, roles in (grant_config or {}).items() -%}
        {%- do grantees.extend([roles] if roles is string else roles) -%}
    {%- endfor -%}
    {%- if grantees | length > 0 -%}
        {%- do default__apply_grants(relation, grant_config, should_revoke) -%}
    {%- endif -%}
{% endmacro %}

{# The value of query parameter `name` in a URL column (empty when absent): a tracked link's
   utm_campaign. regexp_extract has the same signature and no-match result on DuckDB and Spark. #}
{% macro url_parameter(column, name) -%}
    regexp_extract({{ column }}, '[?&]{{ name }}=([^&#]*)', 1)
{%- endmacro %}

{# Session settings for a model written as a long chain of CTEs (the EM rounds of
   int_identity_match_weights): Spark's analyzer gives up after 100 resolution passes by default,
   fewer than such a chain needs. DuckDB needs none. #}
{% macro deep_query_hooks() -%}
    {{ return(adapter.dispatch('deep_query_hooks', 'yorisoi')()) }}
{%- endmacro %}

{% macro default__deep_query_hooks() -%}
    {{ return([]) }}
{%- endmacro %}

{% macro spark__deep_query_hooks() -%}
    {{ return(['set spark.sql.analyzer.maxIterations=1000']) }}
{%- endmacro %}
