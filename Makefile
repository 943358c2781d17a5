# One entry point for the local (Docker-free) path. `make run` and `make test` install
# everything they need on first use into .local/ (git-ignored).
SHELL := /bin/bash
PYTHON ?= python3
LOCAL ?= .local
VENV := $(LOCAL)/venv
BOOT := $(LOCAL)/bootstrap
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
PARSE_HOME := $(abspath $(LOCAL))/airflow-parse
# --compile-bytecode: write the .pyc files at install, as pip does (uv does not by default).
# Without them every process compiles its imports from source each time when
# PYTHONDONTWRITEBYTECODE is set: `import mlflow` 5.2 -> 2.0 s, scikit-learn 5.4 -> 1.8 s.
SYNC_FLAGS := --compile-bytecode
STAMP := $(VENV)/.installed-$(shell (cat requirements.lock; echo $(SYNC_FLAGS)) 2>/dev/null | cksum | cut -d' ' -f1)

ROWS ?= 20000
DATA ?=
TARGET ?=
export PYTHONPATH := $(CURDIR)
export ML_PIPELINE_HOME := $(abspath $(LOCAL))

.PHONY: help install lock run test lint mlflow-ui api stop monitor bench clean

help:
	@echo "make run    - run the whole pipeline locally (DATA=file.csv TARGET=column for your own data)"
	@echo "make test   - run the test suite"
	@echo "make stop   - stop the local model API started by make run"
	@echo "make monitor SEND=1500 - send drifted traffic to the API, check drift, retrain on drift"
	@echo "make mlflow-ui - open the MLflow UI on the local store"
	@echo "make lint   - ruff"
	@echo "make lock   - re-resolve requirements.lock (Airflow 2.11.0 + requirements*.txt)"

$(BOOT)/bin/uv:
	$(PYTHON) -m venv $(BOOT)
	$(BOOT)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): requirements.lock | $(BOOT)/bin/uv
	@test -x $(PY) || $(BOOT)/bin/uv venv --quiet --python $(PYTHON) $(VENV)
	$(BOOT)/bin/uv pip sync --quiet $(SYNC_FLAGS) --python $(PY) requirements.lock
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

lock: | $(BOOT)/bin/uv
	$(BOOT)/bin/uv pip compile --universal --python-version 3.11 --no-header \
	    requirements-airflow.in requirements.txt requirements-dev.txt -o requirements.lock

run: $(STAMP)
	$(PY) -m devtools.run_pipeline \
	    $(if $(DATA),--data "$(DATA)") $(if $(TARGET),--target "$(TARGET)") --rows $(ROWS)

# Two processes: Astronomer's parse test (.astro/) monkeypatches BaseHook.get_connection
# and os.getenv for the whole interpreter, which must not leak into the other tests.
test: $(STAMP)
	$(PY) -m pytest
	mkdir -p $(PARSE_HOME)
	AIRFLOW_HOME=$(PARSE_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__UNIT_TEST_MODE=True \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$(PARSE_HOME)/airflow.db \
	    $(PY) -m pytest -q -p no:cacheprovider .astro/test_dag_integrity_default.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

mlflow-ui: $(STAMP)
	$(PY) -m devtools.mlflow_server

monitor: $(STAMP)
	$(PY) -m devtools.monitor $(if $(SEND),--send-drifted-traffic $(SEND)) $(if $(SOURCE),--source "$(SOURCE)")

stop: $(STAMP)
	$(PY) -m devtools.services stop

clean:
	rm -rf $(LOCAL)
