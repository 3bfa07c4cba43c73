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

test: $(VENV)/installed
	scripts/install-test-deps.sh
	$(PY) -m pytest tests

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
