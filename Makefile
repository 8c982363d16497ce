# Two entry points for a fresh clone: `make run` and `make test`. Everything else is set-up they
# share, and every step is incremental: a second call only redoes what changed.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch is installed on its own first so pip takes the pinned CPU wheel (or a CUDA build a GPU
# user installed beforehand, see README) and never resolves a multi-GB build by itself.
TORCH_SPEC ?= torch==2.13.0

# Only the modules that change what a trained model is: editing the backend or the client must
# not retrain anything.
MODEL_INPUTS := $(addprefix backend_patch/app/ml/,features.py feature_engineering.py dataset.py \
                 synthetic.py model.py predictions.py train.py)
# serving/settings.py: package_model renders the archive's model-config.yaml batching from its
# defaults (tests/serving/test_archive_inputs.py checks this list against the imports).
ARCHIVE_INPUTS := serving/handler.py serving/request_parser.py serving/package_model.py \
                  serving/settings.py serving/config/model-config.yaml
VERSIONS := 1.0 2.0
MODELS   := $(foreach v,$(VERSIONS),build/models/$(v)/metadata.json)
ARCHIVES := $(foreach v,$(VERSIONS),build/model-store/signflow-$(v).mar)

.PHONY: setup run test lint bench clean java chromium prometheus

setup: $(STAMP) java $(MODELS) $(ARCHIVES)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH_SPEC)'
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $@

java:
	@scripts/ensure_java.sh

chromium:
	@scripts/ensure_chromium.sh

# promtool tests the monitoring rules (monitoring/); the server runs with stack.prometheus.
prometheus:
	@scripts/ensure_prometheus.sh

build/models/%/metadata.json: $(STAMP) $(MODEL_INPUTS)
	$(PY) -m backend_patch.app.ml.train --version $* --out build/models/$*

build/model-store/signflow-%.mar: build/models/%/metadata.json $(ARCHIVE_INPUTS) $(MODEL_INPUTS)
	$(PY) -m serving.package_model --version $* --models build/models --out build/model-store

# `make run SCENARIO=scenarios/canary.yaml ARGS='--set workload.sessions=4 --run-dir reports/x'`
SCENARIO ?= scenarios/quickstart.yaml
ARGS     ?=
run: setup
	$(VENV)/bin/harness run $(SCENARIO) $(ARGS)

test: setup chromium prometheus
	$(PY) -m pytest

# ruff, then mypy strict over harness/ (pyproject [tool.mypy]): ~12 s cold, ~1 s cached.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m pytest benchmarks --benchmark-enable -p no:cacheprovider

clean:
	rm -rf build reports/*/ .pytest_cache .ruff_cache
