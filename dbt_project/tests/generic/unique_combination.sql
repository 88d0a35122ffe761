{# Generic tests dbt does not ship (dbt packages cannot be installed here). #}

{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows_per_key
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
