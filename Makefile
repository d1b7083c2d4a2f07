# stemstore: `make demo` runs the main job, `make test` the whole suite. Both set up everything.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test postgres install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Debian's PostgreSQL server, for the tests' throwaway clusters, espeak-ng, which speaks
# the speech segment of the feature-parity tests, and chromium, the headless browser that
# drives `stemstore serve` in the web tests (Playwright uses it; it never downloads one)
postgres:
	@(ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1) && \
	  command -v espeak-ng >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -q && \
	   $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql espeak-ng chromium)

# pytest-xdist spreads the suite over the machine's two cores (about 1.4x faster).
test: install postgres
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n 2

demo: install
	$(VENV)/bin/stemstore demo

clean:
	rm -rf $(VENV) build *.egg-info demo-output stemstore.duckdb
