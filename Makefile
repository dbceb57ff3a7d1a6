# Two commands on a fresh machine (Python >= 3.11 and make): `make dev` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv dev test test-faults lint typecheck format docs bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=python3.11)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Run everything on embedded Postgres + the embedded Kafka-protocol broker (Ctrl-C stops it).
## RC_SYNC=1 also runs rc-sync against a local stand-in of RevenueCat's API.
dev: $(STAMP)
	$(BIN)/ingester dev$(if $(RC_SYNC), --rc-sync)

## The whole test suite against real servers (embedded unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS),
## in three workers, each with its own servers; a test file stays in one worker. Most tests wait on
## the servers rather than compute, so three workers fit two cores.
test: $(STAMP)
	$(BIN)/pytest -n 3 --dist loadfile

## Whole-system faults (crashes, outages, poison, restarts, replay, lag) against an oracle; about
## 5 min on 2 cores (docs/reliability.md).
## FAULTS_SEED=<n> replays a run (the seed is printed).
test-faults: $(STAMP)
	$(BIN)/pytest tests/faults -s

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Refill the settings tables of README.md, docs/contract.md, docs/consumers.md and
## docs/rc-sync.md, and regenerate docs/asyncapi.yaml from the code.
docs: $(STAMP)
	$(BIN)/python -m ingester.settings_tables --write README.md docs/contract.md docs/consumers.md \
		docs/rc-sync.md
	$(BIN)/python -m ingester.asyncapi --write docs/asyncapi.yaml

## Throughput and memory benchmarks (prints ratios measured in one run).
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
