# DeployGuard: two commands on a fresh machine.
#   make demo   canary rollouts end to end on the embedded AWS (moto)
#   make test   ruff, mypy, cfn-lint, pytest
#   make chaos  AWS faults injected on the embedded AWS, counted (chaos-report.json)
# Both create .venv and install the pinned requirements first.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0

.PHONY: venv demo test lint typecheck cfn-lint pytest bench chaos sam-validate sam-build clean

$(STAMP): requirements-dev.txt pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/deployguard demo

test: lint typecheck cfn-lint pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m deployguard_local.bench

# Fault injection on the embedded AWS: >= 200 seeded runs, a table and chaos-report.json.
chaos: $(STAMP)
	$(BIN)/python -m deployguard_local.chaos.bench

# The AWS SAM CLI lives in its own environment (its pins differ from ours).
$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)

sam-validate: $(SAM)
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint

sam-build: $(SAM)
	SAM_CLI_TELEMETRY=0 $(SAM) build

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .mypy_cache .ruff_cache
