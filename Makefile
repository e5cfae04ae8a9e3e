# The two commands of the quick start:
#   make up     set up and run the whole loop (services, migrations, demo, API, ...)
#   make test   set up and run the checks: ruff, mypy and the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: up test install browser lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/fleetcare up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy fleetcare fleet people cli kinds api ingest maintenance models simulators evaluation testkit tests bench

# The dashboard's browser tests drive Debian's chromium through Playwright (never
# `playwright install`, which downloads its own browsers); without chromium they are skipped.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser tests will be skipped"

# The suite runs every database test on plain PostgreSQL and on TimescaleDB: with a TimescaleDB
# kit for this machine (../shared/timescaledb, development and CI only) the script starts a
# private cluster for the run; without it the TimescaleDB path is skipped (an error in CI).
# Two pytest-xdist workers: each storage path's tests run on one of them, in order
# (tests/fixtures/xdist_storage.py); PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
unit: install browser
	scripts/with-timescaledb.sh $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test: lint typecheck unit

clean:
	rm -rf $(VENV) .fleetcare .mypy_cache .ruff_cache .pytest_cache
