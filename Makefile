# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROMPT ?= Say hello from OCI Functions

.PHONY: run test bench serve doctor clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(BIN)/.installed  ## one prompt through the function, locally, no cloud account
	$(BIN)/python -m genai_handler.local.run --prompt "$(PROMPT)"

test: $(BIN)/.installed  ## unit and end-to-end tests under the real fdk
	$(BIN)/pytest

serve: $(BIN)/.installed  ## the function behind a local API Gateway on 127.0.0.1:$${PORT:-8080}
	$(BIN)/python -m genai_handler.local.gateway

doctor: $(BIN)/.installed  ## check settings, credentials, network and IAM, with the fix
	$(BIN)/python -m genai_handler.doctor

bench: $(BIN)/.installed  ## this function vs the documented way, side by side (builds two venvs)
	$(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
