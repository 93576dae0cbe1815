# `make run` and `make test` bootstrap everything on a fresh machine (python3 >= 3.11 with venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   := data/ohlcv

.PHONY: run test data bench clean

# The venv is rebuilt when the dependency pins change; packages come from constraints.txt (exact
# versions the tests pass with), the project itself is installed editable.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

data/.ohlcv-complete: | $(VENV)/.installed
	$(PY) -m harness.synth --out $(DATA) --symbols 500 --years 10 --seed 7
	touch $@

data: data/.ohlcv-complete

run: $(VENV)/.installed data/.ohlcv-complete
	$(PY) -m harness.run --config config.yaml

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/scaling.py

clean:
	rm -rf $(VENV) data results
