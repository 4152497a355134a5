# The two set-up commands: `make run` (the whole local stack) and `make test`.
# Both install what they need into .venv and node_modules, and do nothing when already installed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
NODE_STAMP := node_modules/.installed-$(shell cat package.json package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)
# Checkov lives in its own venv: its dependency pins must not meet the app's.
CKV_VENV := .venv-checkov
CKV_STAMP := $(CKV_VENV)/.installed-$(shell cat requirements-checkov.txt | cksum | cut -d' ' -f1)
# Offline and deterministic: no platform download, no PyPI version check, a Bicep file Checkov
# cannot parse fails the lint (it would otherwise be skipped silently).
CKV_ENV := BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true CKV_PARSE_ERROR_FAIL=true

.PHONY: run test bench lint install unit integration e2e browser clean

# Debian's chromium for the browser tests (tests/browser/): Playwright drives it through
# executable_path, so nothing is downloaded from Playwright's CDN (`playwright install`).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

install: $(PY_STAMP) $(NODE_STAMP) $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

$(CKV_STAMP): requirements-checkov.txt
	test -x $(CKV_VENV)/bin/python || $(PYTHON) -m venv $(CKV_VENV)
	$(CKV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	rm -f $(CKV_VENV)/.installed-*
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -f node_modules/.installed-*
	touch $@

run: install
	$(PY) -m localdev.run

lint: install $(CKV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(CKV_ENV) $(CKV_VENV)/bin/checkov --framework bicep -d infra --compact --quiet --skip-download

test: lint
	$(PY) -m pytest -q

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

e2e: install
	$(PY) -m pytest -q tests/e2e

browser: install
	$(PY) -m pytest -q tests/browser

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(CKV_VENV) node_modules .localdev .pytest_cache .mypy_cache .ruff_cache
