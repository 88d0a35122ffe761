{# The analysts' copy of a mart: only the columns this model documents in its yml (an allow-list,
   so a column added to the mart later, personal or not, stays out until someone describes it
   here), optionally only the rows `where` keeps. (The columns are known when the model runs,
   not while dbt parses it.) #}
{% macro analytics_copy(upstream, where=none) -%}
    {%- set columns = model.columns.keys() | list -%}
    {%- if execute and not columns -%}
        {{ exceptions.raise_compiler_error(model.name ~ ": document the columns the analysts may read") }}
    {%- endif %}
select
    {%- for name in columns %}
    {{ adapter.quote(name) }}{{ "," if not loop.last }}
    {%- endfor %}
from {{ ref(upstream) }}
{%- if where %}
where {{ where }}
{%- endif %}
{%- endmacro %}
