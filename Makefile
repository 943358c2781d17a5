# One entry point for the local (Docker-free) path. `make run` and `make test` install
# everything they need on first use into .local/ (git-ignored).
SHELL := /bin/bash
PYTHON ?= python3
# AIRFLOW=3: the Airflow 3 line (requirements-airflow3.lock, Dockerfile.airflow3) in its
# own folder, so both environments live side by side: make test AIRFLOW=3.
AIRFLOW ?= 2
ifeq ($(AIRFLOW),3)
LOCAL ?= .local/airflow3
LOCK := requirements-airflow3.lock
else
LOCAL ?= .local
LOCK := requirements.lock
endif
VENV := $(LOCAL)/venv
BOOT := .local/bootstrap
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
PARSE_HOME := $(abspath $(LOCAL))/airflow-parse
# --compile-bytecode: write the .pyc files at install, as pip does (uv does not by default).
# Without them every process compiles its imports from source each time when
# PYTHONDONTWRITEBYTECODE is set: `import mlflow` 5.2 -> 2.0 s, scikit-learn 5.4 -> 1.8 s.
SYNC_FLAGS := --compile-bytecode
STAMP := $(VENV)/.installed-$(shell (cat $(LOCK); echo $(SYNC_FLAGS)) 2>/dev/null | cksum | cut -d' ' -f1)

ROWS ?= 20000
DATA ?=
TARGET ?=
PROBLEM ?=
# Params of the run: CONF='min_rows=100 test_size=0.25' and/or PARAMS=params.json
CONF ?=
PARAMS ?=
# make run WAIT=600: wait up to 600 s for a run that holds this home (default: refuse at once)
WAIT ?=
# Ports of the background services, all on 127.0.0.1 (make ui UI_PORT=8081, ...).
UI_PORT ?= 8080
MLFLOW_PORT ?= 5000
API_PORT ?=
export PYTHONPATH := $(CURDIR)
export ML_PIPELINE_HOME := $(abspath $(LOCAL))
# The model API's address for make run / api / monitor (default http://127.0.0.1:8000).
ifneq ($(API_PORT),)
export MODEL_API_URL := http://127.0.0.1:$(API_PORT)
endif

.PHONY: help install lock run score test test-fast lint ui api stop status mlflow-ui monitor bench clean distributed test-containers

help:
	@echo "make run        - run the whole pipeline locally (DATA=file.csv TARGET=column for your own data, ROWS=n, PROBLEM=regression for the regression demo or to set the problem type)"
	@echo "                  Params: CONF='min_rows=100 allow_contract_change=true' and/or PARAMS=params.json"
	@echo "                  one run per home at a time: WAIT=600 queues behind a running one (else refused)"
	@echo "make score DATA=table.parquet - score a file or folder (Parquet/CSV, any storage URI) with the"
	@echo "                  champion (ml_batch_scoring DAG); CONF='key_columns=[\"id\"] strict_categories=true'"
	@echo "                  make score ROWS=1000000: a generated table of that many rows, scored"
	@echo "make ui         - Airflow UI + scheduler on the runs of make run: http://127.0.0.1:$(UI_PORT)"
	@echo "                  (2.11: webserver; AIRFLOW=3: api-server, DAG processor, triggerer)"
	@echo "                  (UI_PORT=...; admin password: AIRFLOW_UI_PASSWORD, else generated once into $(LOCAL)/airflow/ui/)"
	@echo "make mlflow-ui  - MLflow UI on the local store, in the foreground: http://127.0.0.1:$(MLFLOW_PORT) (MLFLOW_PORT=...)"
	@echo "make api        - start the model API on the current champion (API_PORT=..., default 8000)"
	@echo "make status     - what runs in the background (Airflow UI, model API)"
	@echo "make stop       - stop the Airflow UI and the model API"
	@echo "make monitor SEND=1500 - send drifted traffic to the API, check drift, retrain on drift (SOURCE=batch.csv)"
	@echo "make test       - run the test suite (pytest, with the browser test of make ui, then Astronomer's parse test)"
	@echo "make test-fast  - the quick checks before a commit: every unit and DAG-structure test, and"
	@echo "                  Astronomer's parse test; not the slow kinds ($(SLOW_KINDS); make test runs them)"
	@echo "                  AIRFLOW=3: the same suite on Airflow 3.3.2, in $(if $(filter 3,$(AIRFLOW)),$(LOCAL),.local/airflow3)/ (any target takes AIRFLOW=3)"
	@echo "make distributed - the CeleryExecutor proof by hand: PostgreSQL, Redis, S3 (moto), MLflow and model API"
	@echo "                  servers, a scheduler and two workers sharing no disk; prints each check and where the"
	@echo "                  logs are (CLUSTER_ROWS=3000; needs Debian's postgresql + redis-server); AIRFLOW=3:"
	@echo "                  also the API server (REST API v2, the workers' Task Execution API) and DAG processor"
	@echo "make test-containers - the Astro path on podman (root): astro dev parse, start (both DAGs, the model API"
	@echo "                  from the host, a restart) and pytest reproduced with stand-in images (containers/README.md)"
	@echo "make lint       - ruff check, ruff format --check, mypy (include/); the same as pre-commit's hooks"
	@echo "make bench      - benchmark the model API against mlflow models serve (needs wrk)"
	@echo "make install    - create $(VENV) from requirements.lock (make run and make test do it on first use)"
	@echo "make lock       - re-resolve requirements.lock (Airflow 2.11.0 + requirements*.txt; AIRFLOW=3: requirements-airflow3.lock)"
	@echo "make clean      - remove $(LOCAL)/ (stop the services first: make stop)"

$(BOOT)/bin/uv:
	$(PYTHON) -m venv $(BOOT)
	$(BOOT)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): $(LOCK) | $(BOOT)/bin/uv
	@test -x $(PY) || $(BOOT)/bin/uv venv --quiet --python $(PYTHON) $(VENV)
	$(BOOT)/bin/uv pip sync --quiet $(SYNC_FLAGS) --python $(PY) $(LOCK)
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

# make lock AIRFLOW=3: the Airflow 3 line's lock (requirements-airflow3.*, Dockerfile.airflow3).
lock: | $(BOOT)/bin/uv
ifeq ($(AIRFLOW),3)
	$(BOOT)/bin/uv pip compile --universal --python-version 3.11 --no-header \
	    requirements-airflow3.in requirements-airflow3.txt requirements-dev.txt \
	    -o requirements-airflow3.lock
else
	$(BOOT)/bin/uv pip compile --universal --python-version 3.11 --no-header \
	    requirements-airflow.in requirements.txt requirements-dev.txt -o requirements.lock
endif

run: $(STAMP)
	$(PY) -m devtools.run_pipeline \
	    $(if $(DATA),--data "$(DATA)") $(if $(TARGET),--target "$(TARGET)") --rows $(ROWS) \
	    $(if $(PROBLEM),--problem "$(PROBLEM)") \
	    $(if $(CONF),--conf-string '$(CONF)') $(if $(PARAMS),--params-file "$(PARAMS)") \
	    $(if $(WAIT),--wait $(WAIT))

# The batch-scoring DAG on the embedded Airflow of make run (same home, champion, storage).
# `make score ROWS=1000000` (ROWS given, no DATA): a generated churn table of ROWS rows
# (row groups of 250,000; made once, kept in $(LOCAL)/data/score_input/) is scored.
SCORE_TABLE := $(abspath $(LOCAL))/data/score_input/churn_$(ROWS).parquet
SCORE_DATA := $(if $(DATA),$(DATA),$(if $(filter command line,$(origin ROWS)),$(SCORE_TABLE)))
score: $(STAMP)
	$(if $(SCORE_DATA),$(if $(DATA),,test -f "$(SCORE_TABLE)" || \
	    $(PY) -m include.ml_pipeline.data_preparation.sample_data "$(SCORE_TABLE)" --rows $(ROWS)))
	$(PY) -m devtools.score $(if $(SCORE_DATA),--data "$(SCORE_DATA)") \
	    $(if $(CONF),--conf-string '$(CONF)') $(if $(PARAMS),--params-file "$(PARAMS)") \
	    $(if $(WAIT),--wait $(WAIT))

# Two processes: Astronomer's parse test (.astro/) monkeypatches BaseHook.get_connection
# and os.getenv for the whole interpreter, which must not leak into the other tests.
# .astro/ holds the Astro CLI's test, which `astro dev parse` and `astro deploy` run on
# either line (its DagBag call falls back for Airflow 3.3, which has no include_examples).
define astro_parse_test
	mkdir -p $(PARSE_HOME)
	AIRFLOW_HOME=$(PARSE_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__UNIT_TEST_MODE=True \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$(PARSE_HOME)/airflow.db \
	    $(PY) -m pytest -q -p no:cacheprovider .astro/test_dag_integrity_default.py
endef
# The slow kinds (pytest marks, one folder of tests/ each; pyproject.toml lists them);
# a test marked `quick` in their folders (a check of files or pure logic) is fast.
SLOW_KINDS := e2e services distributed ui containers
empty :=
space := $(empty) $(empty)
FAST_SELECTION := quick or not ($(subst $(space), or ,$(SLOW_KINDS)))

test: $(STAMP)
	$(PY) -m pytest
	$(astro_parse_test)

# The quick tier: under 3 minutes on a 2-core machine; `make test` stays the whole suite.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "$(FAST_SELECTION)"
	$(astro_parse_test)

# The distributed proof of tests/distributed by hand; the cluster's folder is kept (printed).
CLUSTER_ROWS ?= 3000
distributed: $(STAMP)
	$(PY) -m devtools.cluster --rows $(CLUSTER_ROWS)

# The Astro path in containers (containers/README.md): podman, stand-in base images under
# the names the project's files use (cached), astro dev parse / start / pytest reproduced.
test-containers: $(STAMP)
	$(PY) -m containers.run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

ui: $(STAMP)
	$(PY) -m devtools.ui start --port $(UI_PORT)

mlflow-ui: $(STAMP)
	$(PY) -m devtools.mlflow_server --port $(MLFLOW_PORT)

api: $(STAMP)
	$(PY) -m devtools.services api

monitor: $(STAMP)
	$(PY) -m devtools.monitor $(if $(SEND),--send-drifted-traffic $(SEND)) $(if $(SOURCE),--source "$(SOURCE)")

status: $(STAMP)
	$(PY) -m devtools.services status

stop: $(STAMP)
	$(PY) -m devtools.services stop

bench: $(STAMP)
	$(PY) benchmarks/bench_model_api.py

clean:
	rm -rf $(LOCAL)
