# TraceFoundry developer commands. `make run` and `make test` work on a fresh machine:
# each creates .venv and installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The stamp changes (and the install re-runs) when either pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml sdk/python/pyproject.toml | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-postgres fuzz lint fmt venv migrate bench schema export-trace clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./sdk/python
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

## Run the product: SQLite, in-memory channel layer, demo data, http://$(HOST):$(PORT)
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap --demo --url http://$(HOST):$(PORT)/
	$(BIN)/python -m tracefoundry.server -b $(HOST) -p $(PORT)

## Run the test suite (SQLite unless DATABASE_URL says otherwise)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The suite against the local PostgreSQL and Redis (what CI runs second)
test-postgres: $(STAMP)
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

## Fuzz the API with schemathesis against a live server on the local PostgreSQL (what CI runs)
fuzz: $(STAMP)
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \
		$(BIN)/python -m tests.fuzz.run_schemathesis $(FUZZ_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run

fmt: $(STAMP)
	$(BIN)/ruff check --fix .

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

schema: $(STAMP)
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

bench: $(STAMP)
	$(BIN)/python bench/events_append.py

## Export a trace from the local database as a bundle:
## make export-trace TRACE=<trace id> [OUT=file.zip] [STRICT=1]
# TRACE is checked when the Makefile is read, before the venv is built or anything runs.
ifneq ($(filter export-trace,$(MAKECMDGOALS)),)
ifeq ($(strip $(TRACE)),)
$(error TRACE is missing: make export-trace TRACE=<trace id> [OUT=file.zip] [STRICT=1])
endif
endif
export-trace: $(STAMP)
	$(BIN)/python -m tracefoundry.cli export-trace --local '$(TRACE)' \
		$(if $(OUT),-o '$(OUT)') $(if $(filter-out 0 no false,$(STRICT)),--strict)

clean:
	rm -rf $(VENV) tracefoundry.sqlite3* staticfiles
