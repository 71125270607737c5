# The two commands of the quick start: `make run` and `make test`. `make help` lists the rest.
# `make run`, `make serve` and `make doctor` install only what they import: requirements.txt (the function's)
# and requirements-local.txt (the local tools'); `make test` and `make bench` add requirements-dev.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP     := $(VENV)/.dev-installed
PIP_INSTALL   := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Exits non-zero under Python < 3.11 (the image runs 3.12; the code needs 3.11+).
SUPPORTED     := -c 'import sys; sys.exit(sys.version_info < (3, 11))'

.DEFAULT_GOAL := help
.PHONY: help run test lint bench serve doctor clean stack image

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## /  make \1\t/'

# Checks the interpreter before anything is built; rebuilds a .venv made by a wrong or missing
# Python; removes .venv if the install fails, so the next run never reuses a half-built one.
$(RUNTIME_STAMP): requirements.txt requirements-local.txt
	@$(PYTHON) $(SUPPORTED) 2>/dev/null || { \
	  echo "make: Python 3.11 or newer is needed; PYTHON=$(PYTHON) is $$($(PYTHON) --version 2>/dev/null || echo 'not found')." >&2; \
	  echo "make: pick another interpreter, e.g. make $(or $(MAKECMDGOALS),run) PYTHON=python3.12" >&2; \
	  exit 1; }
	@$(BIN)/python $(SUPPORTED) 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); } \
	  && $(PIP_INSTALL) -r requirements.txt \
	  || { rm -rf $(VENV); echo "make: installing requirements.txt failed; removed $(VENV)" >&2; exit 1; }
	@$(PIP_INSTALL) -r requirements-local.txt \
	  || { rm -rf $(VENV); echo "make: installing requirements-local.txt failed; removed $(VENV)" >&2; exit 1; }
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	@$(PIP_INSTALL) -r requirements-dev.txt \
	  || { rm -rf $(VENV); echo "make: installing requirements-dev.txt failed; removed $(VENV)" >&2; exit 1; }
	@touch $@

# PROMPT reaches run.py through the environment, as given: $(value) stops make expanding its $, and the
# shell never sees it. Unset or empty, run.py sends its default prompt.
run: export MAKE_RUN_PROMPT := $(value PROMPT)
run: $(RUNTIME_STAMP)  ## one prompt through the function, locally, no cloud account
	$(BIN)/python -m genai_handler.local.run

# PYTHONDONTWRITEBYTECODE emptied: the first step, collecting every module, leaves pytest's rewritten test
# modules and genai_handler's bytecode in __pycache__ for the workers and the function processes to read.
test: export PYTHONDONTWRITEBYTECODE :=
test: $(DEV_STAMP)  ## unit and end-to-end tests under the real fdk: the soak alone, then the rest in parallel
	$(BIN)/pytest -m soak && $(BIN)/pytest -n 6 --dist loadfile --no-loadscope-reorder -m "not soak"

# Runs all three checks, so one pass shows every problem, and fails if any failed.
lint: $(DEV_STAMP)  ## ruff (lint and format) and mypy, configured in pyproject.toml, as CI runs them
	@status=0; \
	  $(BIN)/ruff check . || status=1; \
	  $(BIN)/ruff format --check . || status=1; \
	  $(BIN)/mypy || status=1; \
	  exit $$status

serve: $(RUNTIME_STAMP)  ## the function behind a local API Gateway on 127.0.0.1:8080 (PORT=... to change)
	$(BIN)/python -m genai_handler.local.gateway

doctor: $(RUNTIME_STAMP)  ## check settings, credentials, network and IAM, with the fix
	$(BIN)/python -m genai_handler.doctor

bench: $(DEV_STAMP)  ## this function vs the documented way, side by side (builds two venvs)
	$(BIN)/python bench/bench.py

stack:  ## the Resource Manager zip (dist/genai-stack.zip) for the one-step deploy (docs/deploy-stack.md)
	$(PYTHON) -m genai_handler.local.stack zip

image:  ## fn build + docker push the function image, print its URL (REGION=... NAMESPACE=...)
	$(PYTHON) -m genai_handler.local.stack image --region "$(REGION)" --namespace "$(NAMESPACE)"

clean:  ## remove .venv and the test and lint caches (the next make rebuilds .venv)
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache
