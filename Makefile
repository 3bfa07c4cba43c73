# The two commands of the README: `make quickstart` and `make test`. Each sets up what it needs:
# .venv with the locked requirements.txt and the package installed editable (pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARDS ?= 4
ROWS ?= 20000
DATASET ?= laion400m

.PHONY: quickstart test test-fast lint ui bench bench-scale bench-search bench-index requirements clip-export

$(VENV)/installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

quickstart: $(VENV)/installed
	$(PY) scripts/quickstart.py --dataset $(DATASET) --shards $(SHARDS) --rows $(ROWS)

# The oldest ClickHouse the package claims (engines.MIN_SERVER_VERSION): chdb-core 26.7.3 is
# ClickHouse 26.7.2.1, the first whose clickhouse-local serves HTTP and has the vector index. Only the
# test server's process runs on it (tests/clickhouse_server.py, LAION_TEST_SERVER_PYTHON).
OLDEST_CHDB_CORE := 26.7.3
OLDEST_VENV := .venv-chdb-core-$(OLDEST_CHDB_CORE)
$(OLDEST_VENV)/installed:
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install --quiet --no-deps chdb-core==$(OLDEST_CHDB_CORE)
	touch $@

# clip-export's own environment: torch and transformers, which the package does not need. pip picks a
# CPU build of torch where one is on its index (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
EXPORT_VENV := .venv-clip-export
$(EXPORT_VENV)/installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install --quiet -c requirements.txt numpy pyarrow pillow onnx onnxruntime tokenizers \
	  requests torch==2.13.0 transformers==5.25.0 safetensors==0.8.0 regex==2026.11.19 onnxscript==0.7.2
	$(EXPORT_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# OpenAI's ViT-L/14 (the LAION-5B vectors' model) as ONNX in OUT: set LAION_CLIP_L14_MODEL_DIR to it.
OUT ?= models/clip-vit-l-14
clip-export: $(EXPORT_VENV)/installed
	$(EXPORT_VENV)/bin/python -m laion_ingest clip-export --model ViT-L/14 --out $(OUT)

lint: $(VENV)/installed
	$(VENV)/bin/ruff check .

# Everything on ClickHouse 26.9, then the DAG and the SQL functions on a 26.7 server.
test: lint $(OLDEST_VENV)/installed $(EXPORT_VENV)/installed
	scripts/install-test-deps.sh
	LAION_TEST_EXPORT_PYTHON=$(CURDIR)/$(EXPORT_VENV)/bin/python $(PY) -m pytest tests
	LAION_TEST_SERVER_PYTHON=$(CURDIR)/$(OLDEST_VENV)/bin/python $(PY) -m pytest -q tests/test_dag.py tests/test_clip_search.py -k server

# The inner loop: the suite without the tests that drive airflow standalone, a browser or a cluster.
test-fast: lint
	$(PY) -m pytest -m "not slow" tests

# Optional third command: Airflow standalone with the sample loaded, the DAG's grid and the search page.
PORT ?= 8080
ui: $(VENV)/installed
	PYTHONPATH=tests $(PY) scripts/ui.py --port $(PORT) --shards $(SHARDS)

# Benchmarks import the test suite's servers (tests/clickhouse_server.py and the rest).
bench: $(VENV)/installed
	PYTHONPATH=tests $(PY) bench/run.py

bench-search: $(VENV)/installed
	PYTHONPATH=tests $(PY) bench/search.py

bench-scale: $(VENV)/installed
	PYTHONPATH=tests $(PY) bench/scale.py

# usearch, the HNSW library inside ClickHouse's vector index, standalone: the bench's alone, not the package's.
bench-index: $(VENV)/installed
	$(PY) -m pip install --quiet usearch==2.26.6
	PYTHONPATH=tests $(PY) bench/index_build.py

# Re-lock requirements.txt from pyproject.toml in a throwaway virtual environment.
requirements:
	rm -rf /tmp/laion-req && $(PYTHON) -m venv /tmp/laion-req
	/tmp/laion-req/bin/pip install --quiet ".[test]"
	(echo "# Exact versions of pyproject.toml's dependencies (with [test]) and everything they pull in: make requirements"; \
	 /tmp/laion-req/bin/pip freeze --exclude laion-ingest) > requirements.txt
