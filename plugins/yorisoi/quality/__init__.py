"""Quality gates with Great Expectations 1.x: suite files in `expectations/<layer>/`, validated
between layers by Airflow tasks (raw → staging before the customer model's dbt build, marts →
activation after the segment build), Data Docs in `var/out/docs/quality/`.

Modules: `suites` (load and check the YAML suite files), `validate` (read the warehouse read-only,
run GX, write Data Docs, keep the validation history), `gate` (the Airflow task bodies), `notify`
(failure alerts by email and Slack webhook), `cli` (`yorisoi quality ...`).

Nothing here imports Great Expectations at module level: its import takes about 8 s, so it is
imported inside the functions that validate."""
