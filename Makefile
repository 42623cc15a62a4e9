# The whole set-up on a fresh machine is `make run` or `make test`: each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1

DATA ?= ../shared/data/demand-forecasting-kernels-only.zip

.PHONY: install run test test-postgres test-random test-fast lint locks bench-compression clean

install: $(STAMP)

# The hashed locks (tools/locks.py): exactly these files or nothing. The tests add their own lock on top.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.lock
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock -r requirements-test.lock
	touch $(TEST_STAMP)

# Rewrite the three locks from pyproject.toml at the versions they pin (reads the package index).
locks: $(STAMP)
	$(BIN)/python tools/locks.py

run: $(STAMP)
	$(BIN)/shelfcast run

# In file order; `test-random` runs the same tests in random orders.
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -p no:randomly --timeout=1800

# The integration tier again with the session's Prefect server, MLflow server and alert logs on a PostgreSQL
# server the tests start (binaries on PATH or under /usr/lib/postgresql/*/bin: `apt-get install postgresql`).
test-postgres: $(TEST_STAMP)
	SHELFCAST_TEST_DATABASE=postgres $(BIN)/python -m pytest -p no:cacheprovider -p no:randomly --timeout=1800 \
		-m integration

# The suite (or TESTS, e.g. TESTS=tests/unit) once per seed in SEEDS, in pytest-randomly's order for that seed:
# a test that passes only after another one ran fails here. `--randomly-seed=N` reproduces an order.
SEEDS ?= 1 2 3
TESTS ?=
test-random: $(TEST_STAMP)
	for seed in $(SEEDS); do \
		$(BIN)/python -m pytest -p no:cacheprovider -p randomly --randomly-seed=$$seed --timeout=1800 $(TESTS) \
			|| exit 1; \
	done

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -m unit

# The architecture contracts of pyproject.toml, on the sources laid out as installed (flows/ as shelfcast.flows).
lint: $(TEST_STAMP)
	$(BIN)/python -m pytest -q tests/unit/test_architecture.py

bench-compression: $(STAMP)
	$(BIN)/shelfcast bench compression --data $(DATA) --stores 1-5 --items 1-10 --seeds 3 \
		--out bench/results/compression.json

clean:
	rm -rf $(VENV) .pytest_cache
