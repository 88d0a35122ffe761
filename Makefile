# Yorisoi: every target sets itself up. `make demo` and `make test` work on a machine that has
# only Python, git and the package registries.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= S
SEED   ?= 42

export AIRFLOW_HOME := $(CURDIR)/var/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(CURDIR)/var/airflow/airflow.db

.PHONY: install lock lock-spark demo airflow report browser test test-all test-daily test-spark test-scheduler java lint format bench bench-ingest bench-customers bench-segments clean

install: $(STAMP)

# The lock file pins every transitive package; uv installs it in ~1 minute, and the stamp makes
# the second run a no-op until the lock or pyproject changes.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip sync --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Re-lock after changing dependencies in pyproject.toml (requirements.lock: everything `make` installs;
# requirements-product.lock: the product alone, for the image) (not automatic: a clean clone's file times
# are arbitrary, and installs must always come from the committed lock).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra clv --python-version 3.11 -o requirements-product.lock

demo: install
	$(BIN)/yorisoi demo --scale $(SCALE) --seed $(SEED)

# The Airflow UI over the demo's runs and task logs: api-server, scheduler and dag-processor on
# 127.0.0.1 with a small parallelism; prints the URL and login; Ctrl-C stops all three.
airflow: install
	$(BIN)/python -m yorisoi_kit.airflow_ui

# The CRM report from the current warehouse (make demo builds one), checked in headless Chromium.
report: install browser
	$(BIN)/yorisoi report build
	$(BIN)/yorisoi report check

# The report's browser test drives Debian's chromium. Run as root on a machine without it, this
# installs it with apt (Debian / Ubuntu); otherwise it says the browser test will be skipped.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the report's browser test (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else echo "chromium is missing (apt-get install chromium): the report's browser test will be skipped"; fi

test: install browser
	$(BIN)/python -m pytest -m "not slow"

test-all: install browser
	$(BIN)/python -m pytest

# SQL style (.sqlfluff): sqlfluff's dbt templater compiles each model against the profile's duckdb
# target, here on in-memory databases, so a lint needs no built warehouse and never waits for a
# build's write lock. SQL outside the dbt project (include/sql, when there is any) is not a dbt
# node: the jinja templater reads it.
# The same dbt project on Spark (tests/spark): dbt-spark in session mode on a local pyspark, from a
# venv of its own (.venv-spark, pinned by requirements-spark.lock), against DuckDB's answers from
# .venv. Needs Java 17: installed with apt when run as root on a machine without it.
SPARK_VENV := .venv-spark
SPARK_STAMP := $(SPARK_VENV)/.installed

$(SPARK_STAMP): requirements-spark.lock
	test -x $(SPARK_VENV)/bin/python || $(PYTHON) -m venv $(SPARK_VENV)
	$(SPARK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(SPARK_VENV)/bin/uv pip sync --python $(SPARK_VENV)/bin/python requirements-spark.lock
	$(SPARK_VENV)/bin/uv pip install --python $(SPARK_VENV)/bin/python --no-deps -e .
	touch $(SPARK_STAMP)

java:
	@if command -v java >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Java 17 for the Spark build test (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; \
	else echo "Java 17 is missing (apt-get install openjdk-17-jre-headless)" >&2; exit 1; fi

test-spark: install java $(SPARK_STAMP)
	YORISOI_DUCKDB_PYTHON=$(CURDIR)/$(BIN)/python $(SPARK_VENV)/bin/python -m pytest tests/spark -p no:cacheprovider

# The pipeline under a real Airflow scheduler (tests/orchestration): api-server, scheduler and
# dag-processor with the LocalExecutor, metadata in a throwaway database on the PostgreSQL at
# 127.0.0.1:5432 (YORISOI_TEST_POSTGRES_URL moves it), the XS brand from ingest to one export.
test-scheduler: install
	$(BIN)/python -m pytest -m slow tests/orchestration -p no:cacheprovider

# The daily run's equality test (tests/transform/test_daily_run.py, docs/scale.md): the XS brand
# after a day of change, built incrementally and with --full-refresh, every table compared. Slow
# (two builds of every model), so outside `make test`; CI runs it.
test-daily: install
	$(BIN)/python -m pytest -m slow tests/transform/test_daily_run.py -p no:cacheprovider

lock-spark: $(STAMP)
	$(BIN)/uv pip compile requirements-spark.in --python-version 3.11 -o requirements-spark.lock

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	YORISOI_WAREHOUSE=:memory: YORISOI_ANALYTICS_DB=:memory: $(BIN)/sqlfluff lint dbt_project/models
	@if [ -d include/sql ]; then $(BIN)/sqlfluff lint --templater jinja include/sql; fi

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/yorisoi bench --scale $(SCALE) --json

bench-ingest: install
	$(BIN)/yorisoi bench --suite ingest --scale $(SCALE)

bench-customers: install
	$(BIN)/yorisoi bench --suite customers --scale $(SCALE)

bench-segments: install
	$(BIN)/yorisoi bench --suite segments --scale $(SCALE)

clean:
	rm -rf var/ .pytest_cache
