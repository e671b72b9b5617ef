# The README's two commands: `make demo` (the whole cycle on this machine) and `make test` (every check CI runs).
SHELL := /bin/bash

# Python writes its bytecode caches (__pycache__ folders, git-ignored, and the venvs') while make
# runs: where the environment sets PYTHONDONTWRITEBYTECODE, as this machine's does, each of a test
# run's ~400 Python processes (test workers, Lambda workers, pods, training jobs, builds) compiled
# again every module it imported from source (moto's and boto3's for a local runtime: 4.6 s of CPU
# a process, 1.8 s with bytecode).
unexport PYTHONDONTWRITEBYTECODE
.SHELLFLAGS := -o pipefail -c
# pip prints a warning per package for this machine's extra index locations; keep the log readable.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
PYTHON ?= python3.11
VENV := .venv
SAMVENV := .venv-sam
CHECKOVVENV := .venv-checkov
UV := .tools/uv/bin/uv
UV_PIP := $(UV) pip install --quiet
PY := $(VENV)/bin/python
# Template checks run offline: a region and dummy credentials, never a real account.
AWS_OFFLINE := AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing SAM_CLI_TELEMETRY=0

.PHONY: demo test check static venvs unit-beside install lint typecheck template template-sam template-lint template-checkov unit integration e2e bench bench-serving clean

# uv installs the venvs: the same versions pip resolves (compared with `pip freeze` on all three),
# in about a tenth of the time (13 s of CPU for the three against pip's 130 s on this machine).
# Pinned in requirements-uv.txt; pip puts it in .tools/uv, outside every venv.
$(UV): requirements-uv.txt
	@echo "==> installing uv, the venvs' installer, into .tools/uv"
	@rm -rf .tools/uv
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target .tools/uv -r requirements-uv.txt $(QUIET_PIP)
	@touch $@

# .venv keeps the pip its Python ships (python -m venv): the local runtime's model builds run
# `python -m pip install` for a team's code requirements.
$(VENV)/.installed: pyproject.toml local/pyproject.toml constraints.txt $(UV)
	@echo "==> creating $(VENV) and installing modelops and its local runtime, modelops-local (first run: about 20 s)"
	@$(PYTHON) -m venv $(VENV)
	@$(UV_PIP) --python $(PY) -c constraints.txt -e '.[dev]' -e ./local
	@touch $@

$(SAMVENV)/.installed: requirements-sam.txt $(UV)
	@echo "==> installing aws-sam-cli into $(SAMVENV) (its pins conflict with the project's, so it lives apart)"
	@$(UV) venv --quiet --allow-existing --python $(PYTHON) $(SAMVENV)
	@$(UV_PIP) --python $(SAMVENV)/bin/python -r requirements-sam.txt
	@touch $@

$(CHECKOVVENV)/.installed: requirements-checkov.txt $(UV)
	@echo "==> installing checkov and cfn-lint's serverless rules into $(CHECKOVVENV) (checkov's pins conflict with the project's)"
	@$(UV) venv --quiet --allow-existing --python $(PYTHON) $(CHECKOVVENV)
	@$(UV_PIP) --python $(CHECKOVVENV)/bin/python -r requirements-checkov.txt
	@touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/modelops local demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) tools/run_mypy.py

# Security scans with zero findings: each skip is justified beside its resource (template.yaml's
# Metadata). cfn-lint runs a second time with awslabs' serverless rules; checkov scans the template
# and the Kubernetes manifests rendered for an example model (it cannot read their placeholders).
# Three independent single-process groups (about 20 s each on a clean clone), so `make -j` runs
# them side by side with mypy.
template: template-sam template-lint template-checkov

template-sam: $(SAMVENV)/.installed
	$(AWS_OFFLINE) $(SAMVENV)/bin/sam validate --lint --template template.yaml
	$(AWS_OFFLINE) $(SAMVENV)/bin/sam build --template template.yaml --build-dir .aws-sam/build

template-lint: $(VENV)/.installed $(CHECKOVVENV)/.installed
	$(AWS_OFFLINE) $(VENV)/bin/cfn-lint template.yaml
	$(AWS_OFFLINE) $(CHECKOVVENV)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules

template-checkov: $(VENV)/.installed $(CHECKOVVENV)/.installed
	$(CHECKOVVENV)/bin/checkov --skip-download --compact --quiet --framework cloudformation -f template.yaml
	$(PY) -m modelops_local.manifests .aws-sam/k8s-rendered
	$(CHECKOVVENV)/bin/checkov --skip-download --compact --quiet --framework kubernetes -d .aws-sam/k8s-rendered

unit: $(VENV)/.installed
	$(VENV)/bin/pytest -m unit

integration: $(VENV)/.installed
	$(VENV)/bin/pytest -m integration

e2e: $(VENV)/.installed
	$(VENV)/bin/pytest -m e2e

# `make test`, in three phases (each figure: README, Tests):
# 1. `venvs`: uv installs the three venvs side by side (no bytecode compiled ahead: compiling all
#    of .venv costs 38 s of CPU; each module is compiled once, by the first process importing it,
#    since bytecode caches are written: see PYTHONDONTWRITEBYTECODE above).
# 2. The integration tests marked `alone` on TEST_WORKERS pytest-xdist workers, with the cores to
#    themselves: timing goals (1,000 uploads delivered within a minute, 20 models holding their
#    locks together), real `serve` and pod processes on deadlines (tests/conftest.py, ALONE); each
#    test a unit of work, the slowest first (SLOW_FIRST_SECONDS). They leave about a quarter of the
#    cores idle (waiting on processes and deadlines); beside them at nice 10, the unit tier and the
#    static checks (lint, mypy, the template checks: CPU only, no deadline) fill it, taking what the
#    tests leave and little more (tools/beside.py; .beside-alone.log, shown when both are done). A
#    lint or type error fails the run at the end of this phase, not before it: `make check` is the
#    quick loop.
# 3. The end-to-end tests in E2E_LANES lanes, each a worker with its own local runtime (balanced by
#    measured seconds, tests/conftest.py), and beside them, in one process, the rest of the
#    integration tier: the lanes mostly wait out bake and watch windows, which that process fills.
#    tools/beside.py runs the two (its output goes to .beside-e2e.log, shown when both are done;
#    either failing fails the run; bounded). Three lanes: with two, the lanes ended 130 s after the
#    process beside them and the phase left 29% of the cores idle (437 s); with three, 357 s, both
#    ending together, 11% idle (2026-12-06, README Tests).
# E2E_LANES=1 TEST_WORKERS=1: no pytest-xdist workers.
E2E_LANES ?= 3
TEST_WORKERS ?= 2
test:
	@echo "==> $$(date +%T) installing the three venvs side by side"
	@$(MAKE) --no-print-directory -j3 --output-sync=target venvs
	@echo "==> $$(date +%T) the integration tests that need the cores to themselves (marker 'alone'); beside them at nice 10, the unit tier, lint, types and the template checks (log: .beside-alone.log, shown when both end)"
	@$(PY) tools/beside.py .beside-alone.log --nice 10 \
		-- $(MAKE) --no-print-directory -j2 --output-sync=target unit-beside static \
		-- $(VENV)/bin/pytest -m "integration and alone" --durations=10 $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS))
	@echo "==> $$(date +%T) the e2e tier in $(E2E_LANES) lane(s); beside it the rest of the integration tier (log: .beside-e2e.log, shown at the end)"
	@$(PY) tools/beside.py .beside-e2e.log \
		-- $(VENV)/bin/pytest -m "integration and not alone" -q -n 0 --durations=10 \
		-- env E2E_LANES=$(E2E_LANES) $(VENV)/bin/pytest -m e2e --durations=15 $(if $(filter-out 1,$(E2E_LANES)),-n $(E2E_LANES))

venvs: $(VENV)/.installed $(SAMVENV)/.installed $(CHECKOVVENV)/.installed

# The unit tier in one process, as `make test` runs it beside the `alone` tests.
unit-beside: $(VENV)/.installed
	$(VENV)/bin/pytest -m unit -q -n 0 --durations=5

static: lint typecheck template

# The edit loop: lint, types and the unit tier (under two minutes).
check: lint typecheck
	$(VENV)/bin/pytest tests/unit -n 2 -q

bench: $(VENV)/.installed
	$(PY) benchmarks/rollout_bench.py

# Serving benchmark (bench/serving/README.md): ours vs MLServer vs FastAPI-naive, each pinned to one
# core, wrk on the other. The baselines live in their own venv; extra flags via BENCH_SERVING_ARGS.
BENCH_SERVING_VENV := bench/serving/.venv
$(BENCH_SERVING_VENV)/.installed: bench/serving/requirements.txt bench/serving/constraints.txt
	@echo "==> creating $(BENCH_SERVING_VENV) for the serving benchmark's baselines (MLServer, FastAPI)"
	@$(PYTHON) -m venv $(BENCH_SERVING_VENV)
	@$(BENCH_SERVING_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/serving/requirements.txt -c bench/serving/constraints.txt $(QUIET_PIP)
	@# mlserver-xgboost requires the CUDA `xgboost` wheel; xgboost-cpu provides the same module (requirements.txt)
	@$(BENCH_SERVING_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps mlserver-xgboost==1.7.1 $(QUIET_PIP)
	@touch $@

bench-serving: $(VENV)/.installed $(BENCH_SERVING_VENV)/.installed
	@command -v wrk >/dev/null || { echo "==> installing wrk (apt-get)"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk; }
	$(PY) bench/serving/run.py $(BENCH_SERVING_ARGS)

clean:
	rm -rf $(VENV) $(SAMVENV) $(CHECKOVVENV) .tools .aws-sam .modelops
