# The README's two commands: `make demo` (the whole cycle on this machine) and `make test` (every check CI runs).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# pip prints a warning per package for this machine's extra index locations; keep the log readable.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
PYTHON ?= python3.11
VENV := .venv
SAMVENV := .venv-sam
PY := $(VENV)/bin/python
# Template checks run offline: a region and dummy credentials, never a real account.
AWS_OFFLINE := AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing SAM_CLI_TELEMETRY=0

.PHONY: demo test install lint typecheck template unit integration e2e bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "==> creating $(VENV) and installing modelops with its local runtime (first run: about a minute)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[local,dev]' $(QUIET_PIP)
	@touch $@

$(SAMVENV)/.installed: requirements-sam.txt
	@echo "==> installing aws-sam-cli into $(SAMVENV) (its pins conflict with the project's, so it lives apart)"
	@$(PYTHON) -m venv $(SAMVENV)
	@$(SAMVENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-sam.txt $(QUIET_PIP)
	@touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/modelops local demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) tools/run_mypy.py

template: $(VENV)/.installed $(SAMVENV)/.installed
	$(AWS_OFFLINE) $(SAMVENV)/bin/sam validate --lint --template template.yaml
	$(AWS_OFFLINE) $(SAMVENV)/bin/sam build --template template.yaml --build-dir .aws-sam/build
	$(AWS_OFFLINE) $(VENV)/bin/cfn-lint template.yaml

unit: $(VENV)/.installed
	$(VENV)/bin/pytest -m unit

integration: $(VENV)/.installed
	$(VENV)/bin/pytest -m integration

e2e: $(VENV)/.installed
	$(VENV)/bin/pytest -m e2e

test: lint typecheck template
	$(VENV)/bin/pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/rollout_bench.py

clean:
	rm -rf $(VENV) $(SAMVENV) .aws-sam .modelops
