"""The Airflow glue: what the ingest tasks run, the DAG factory built from the source registry, and
the defaults every DAG shares (owner, retries, alerts, the warehouse writers' pool)."""
