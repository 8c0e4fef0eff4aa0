# DeployGuard: two commands on a fresh machine.
#   make demo   canary rollouts end to end on the embedded AWS (moto)
#   make test   ruff (lint and format), mypy, cfn-lint, checkov, pytest
#   make chaos  AWS faults injected on the embedded AWS, counted (chaos-report.json)
#   make docs-screenshots  the README's pictures (docs/*.png) taken again from the console and report in Chromium
# Each creates .venv and installs the pinned requirements first.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
EXPANDED_TEMPLATE := build/template.expanded.json

.PHONY: venv demo test lint typecheck cfn-lint checkov pytest bench chaos docs-screenshots sam-validate sam-build layer deploy clean

$(STAMP): requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "Python 3.11 or newer is needed"'
	@echo "[1/4] creating the virtual environment .venv (first run only)"
	@$(PYTHON) -m venv $(VENV)
	@echo "[2/4] upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "[3/4] installing the pinned dependencies of requirements-dev.txt (about a minute; moto is large)"
	@$(BIN)/python -m pip install --quiet --progress-bar on -r requirements-dev.txt
	@echo "[4/4] installing deployguard itself (editable)"
	@$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)
	@echo "ready: .venv"

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/deployguard demo

test: lint typecheck cfn-lint checkov pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

# checkov on the template as AWS SAM expands it (aws-sam-translator), plus a scan of the expanded IAM
# policies for mutating actions on "*"; suppressions sit next to their resources (Metadata.checkov.skip)
$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/python src/deployguard_local/sam_expand.py template.yaml $(EXPANDED_TEMPLATE)
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov -f $(EXPANDED_TEMPLATE) --framework cloudformation \
		--compact --quiet --skip-download

# The report and console tests drive Debian's Chromium headless (Playwright is pointed at it);
# a fresh machine gets it from Debian's packages on the first run (needs root or sudo).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests (first run only)"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

pytest: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest -n 2 --dist loadfile  # two workers, one per core; a test file stays on one worker (its fixtures)

bench: $(STAMP)
	$(BIN)/python -m deployguard_local.bench
	$(BIN)/deployguard bench scale

# Fault injection on the embedded AWS: >= 200 seeded runs, a table and chaos-report.json.
chaos: $(STAMP)
	$(BIN)/python -m deployguard_local.chaos.bench

# The README's three pictures: the demo's state, the console as serve --local serves it (live canary held at a
# fixed simulated minute) and deployguard report's HTML, photographed in Debian's Chromium at a fixed viewport.
docs-screenshots: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m deployguard_local.screenshots --out docs

# The AWS SAM CLI lives in its own environment (its pins differ from ours).
$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)

sam-validate: $(SAM)
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint

sam-build: $(SAM)
	SAM_CLI_TELEMETRY=0 $(SAM) build

# The layer as sam build makes it (layers/deployguard/Makefile: pinned wheels for Lambda's platform, the
# deployguard package, bytecode compiled), into build/layer/python without the SAM CLI.
layer: $(STAMP)
	$(MAKE) -C layers/deployguard build-DeployGuardLayer ARTIFACTS_DIR=$(abspath build/layer) PYTHON=$(abspath $(BIN)/python)

# make deploy [STACK=name]: the hook function is CodeDeployHook_<stack>, at most 64 characters.
STACK ?= deployguard
deploy: sam-build
	@stack='$(STACK)'; if [ $${#stack} -gt 49 ]; then \
	  echo "stack name '$$stack' has $${#stack} characters; at most 49 fit the hook's function name CodeDeployHook_<stack> (64)" >&2; \
	  exit 2; fi
	SAM_CLI_TELEMETRY=0 $(SAM) deploy --stack-name $(STACK) --guided

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) build .aws-sam .mypy_cache .ruff_cache
