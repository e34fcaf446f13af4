# Two commands on a fresh machine: `make demo` and `make test`. Everything else is installed here.
SHELL := /bin/bash
export DAGSTER_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false

TOOLS := .tools
UV := $(or $(shell command -v uv 2>/dev/null),$(TOOLS)/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench bench-ingest bench-pipeline bench-report bench-anomalies lint format ui clean

$(TOOLS)/bin/uv:
	python3 -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/lib uv
	mkdir -p $(TOOLS)/bin && ln -sf ../lib/bin/uv $(TOOLS)/bin/uv

# The locked environment: rebuilt only when the lock or the project file changes.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python 3.11
	touch $@

# 35 generated days through the whole pipeline (lake, warehouse, Dagster runs) under ./data.
demo: $(VENV)/.synced
	$(VENV)/bin/aispend demo --data-dir data

test: $(VENV)/.synced
	$(VENV)/bin/pytest

bench: $(VENV)/.synced
	$(PY) -m bench.bench_reprice

# The other benchmarks (bench/README.md); each prints its table and writes bench/results/.
bench-ingest: $(VENV)/.synced
	$(PY) -m bench.bench_ingest

bench-pipeline: $(VENV)/.synced
	$(PY) -m bench.bench_pipeline

bench-report: $(VENV)/.synced
	$(PY) -m bench.bench_report

bench-anomalies: $(VENV)/.synced
	$(PY) -m bench.bench_anomalies

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.synced
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The Dagster UI over the demo's data: same lake, warehouse and instance (data/dagster_home).
ui: $(VENV)/.synced
	mkdir -p data/dagster_home && cp -n docs/examples/dagster.yaml data/dagster_home/dagster.yaml 2>/dev/null || true
	AISPEND_DATA_DIR=$(CURDIR)/data DAGSTER_HOME=$(CURDIR)/data/dagster_home \
		$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf out $(VENV)/.synced
