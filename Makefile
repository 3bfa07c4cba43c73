# The two commands of the README: `make quickstart` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARDS ?= 4
ROWS ?= 20000

.PHONY: quickstart test ui bench bench-scale bench-search requirements

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

quickstart: $(VENV)/installed
	$(PY) scripts/quickstart.py --shards $(SHARDS) --rows $(ROWS)

# The oldest ClickHouse the package claims (clickhouse.MIN_SERVER_VERSION): chdb-core 26.7.3 is
# ClickHouse 26.7.2.1, the first whose clickhouse-local serves HTTP and has the vector index. Only the
# test server's process runs on it (tests/clickhouse_server.py, LAION_TEST_SERVER_PYTHON).
OLDEST_CHDB_CORE := 26.7.3
OLDEST_VENV := .venv-chdb-core-$(OLDEST_CHDB_CORE)
$(OLDEST_VENV)/installed:
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install --quiet --no-deps chdb-core==$(OLDEST_CHDB_CORE)
	touch $@

# Everything on ClickHouse 26.9, then the DAG and the SQL functions on a 26.7 server.
test: $(VENV)/installed $(OLDEST_VENV)/installed
	scripts/install-test-deps.sh
	$(PY) -m pytest tests
	LAION_TEST_SERVER_PYTHON=$(CURDIR)/$(OLDEST_VENV)/bin/python $(PY) -m pytest -q tests/test_dag.py tests/test_clip_search.py -k server

# Optional third command: Airflow standalone with the sample loaded, the DAG's grid and the search page.
PORT ?= 8080
ui: $(VENV)/installed
	$(PY) scripts/ui.py --port $(PORT) --shards $(SHARDS)

bench: $(VENV)/installed
	$(PY) bench/run.py

bench-search: $(VENV)/installed
	$(PY) bench/search.py

bench-scale: $(VENV)/installed
	$(PY) bench/scale.py

# Re-pin requirements.txt from requirements.in in a throwaway virtual environment.
requirements:
	rm -rf /tmp/laion-req && $(PYTHON) -m venv /tmp/laion-req
	/tmp/laion-req/bin/pip install --quiet -r requirements.in
	(echo "# Exact pins of requirements.in and everything it pulls in (make requirements regenerates this)."; \
	 /tmp/laion-req/bin/pip freeze) > requirements.txt
