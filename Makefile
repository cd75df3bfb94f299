# TraceFoundry developer commands. `make run` and `make test` work on a fresh machine:
# each creates .venv and installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The stamp changes (and the install re-runs) when either pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml sdk/python/pyproject.toml | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-ts test-postgres fuzz lint fmt venv migrate bench schema export-trace demo-load clean

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

## The TypeScript SDK's tests (node's test runner, against a live server it starts with .venv's Python)
TS_SDK := sdk/typescript
$(TS_SDK)/node_modules/.package-lock.json: $(TS_SDK)/package-lock.json
	cd $(TS_SDK) && npm ci --no-audit --no-fund

test-ts: $(STAMP) $(TS_SDK)/node_modules/.package-lock.json
	cd $(TS_SDK) && TRACEFOUNDRY_PYTHON=$(abspath $(BIN)/python) npm test

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

## Send the demo agent's traces and runs to a running server (default http://127.0.0.1:8000):
## make demo-load [COUNT=50] [SEED=7] [SCENARIO=name]. Without TRACEFOUNDRY_API_KEY, a key for
## project default (runs:write,ingest) is made in the local database, the one `make run` serves.
COUNT ?= 50
SEED ?= 7
demo-load: $(STAMP)
	@key="$$TRACEFOUNDRY_API_KEY"; \
	if [ -z "$$key" ]; then \
		err=$$(mktemp); \
		key=$$($(BIN)/python manage.py apikey create --project default \
			--scopes runs:write,ingest --name demo-load 2>"$$err" | tail -n 1); \
		if [ -z "$$key" ]; then cat "$$err" >&2; rm -f "$$err"; exit 1; fi; \
		rm -f "$$err"; \
	fi; \
	TRACEFOUNDRY_API_URL="$${TRACEFOUNDRY_API_URL:-http://$(HOST):$(PORT)}" \
	TRACEFOUNDRY_API_KEY="$$key" PYTHONPATH=sdk/python/src \
	$(BIN)/python -m tracefoundry_sdk.demo --count '$(COUNT)' --seed '$(SEED)' \
		$(if $(SCENARIO),--scenario '$(SCENARIO)')

clean:
	rm -rf $(VENV) tracefoundry.sqlite3* staticfiles $(TS_SDK)/node_modules $(TS_SDK)/dist
