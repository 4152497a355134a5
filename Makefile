# The two set-up commands: `make run` (the whole local stack) and `make test`.
# Both install what they need into .venv and node_modules, and do nothing when already installed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
NODE_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)

.PHONY: run test bench lint install unit integration e2e clean

install: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -f node_modules/.installed-*
	touch $@

run: install
	$(PY) -m localdev.run

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

e2e: install
	$(PY) -m pytest -q tests/e2e

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .localdev .pytest_cache .mypy_cache .ruff_cache
