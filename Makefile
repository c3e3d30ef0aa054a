# Two commands do everything on a fresh machine: `make bench` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
SOURCES := $(shell find zoo plugins -name '*.py') $(wildcard zoo/templates/*/*) registry.toml pyproject.toml
# The example third-party plugin, installed beside zoo so the tests can run it for real.
EXAMPLE := $(wildcard examples/zoo-densenet/*.py examples/zoo-densenet/pyproject.toml)

.PHONY: install bench lint test test-fast test-slow clean

# Dependencies, reinstalled only when pyproject.toml changes.
$(VENV)/.deps: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[cpu,pretrained,test]'
	touch $@

# zoo itself, reinstalled (not editable: plugins/ installs as zoo_plugins) when a source changes.
$(VENV)/.installed: $(VENV)/.deps $(SOURCES)
	$(PY) -m pip install --quiet --no-deps .
	touch $@

# The tests also need the example plugin installed, as a user would install it.
$(VENV)/.example: $(VENV)/.installed $(EXAMPLE)
	$(PY) -m pip install --quiet --no-deps ./examples/zoo-densenet
	touch $@

install: $(VENV)/.installed

bench: install
	$(VENV)/bin/zoo bench --all

# The team's habits, enforced by .ci/run: lint, format and types clean (settings in pyproject.toml).
lint: $(VENV)/.deps
	$(VENV)/bin/ruff check zoo plugins
	$(VENV)/bin/ruff format --check zoo plugins
	$(VENV)/bin/mypy

test: test-fast test-slow

test-fast: $(VENV)/.example
	$(VENV)/bin/pytest

test-slow: $(VENV)/.example
	$(VENV)/bin/pytest -m slow

clean:
	rm -rf $(VENV) build dist zoo-results
