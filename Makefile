# `make run` and `make test` bootstrap everything on a fresh machine (python3 >= 3.11 with venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   := data/ohlcv

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test data bench load remote placebo chromium clean

# The venv is updated when the dependency pins change; packages come from constraints.txt (exact
# versions the tests pass with), the project itself is installed editable. `make run` installs
# what running needs (.installed), `make test` adds the test extras (.installed-test).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

data/.ohlcv-complete: | $(VENV)/.installed
	$(PY) -m harness.synth --out $(DATA) --symbols 500 --years 10 --seed 7
	touch $@

data: data/.ohlcv-complete

run: $(VENV)/.installed data/.ohlcv-complete
	$(PY) -m harness.run --config config.yaml

# The report test opens report.html in Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

test: $(VENV)/.installed-test chromium
	$(PY) -m pytest -q --durations=15

# 5,000 symbols x 20 years (generated once into data/bench/), whole CLI processes, 3 rounds.
bench: $(VENV)/.installed data/.ohlcv-complete
	$(PY) benchmarks/bench.py

load: $(VENV)/.installed
	$(PY) benchmarks/load.py

# The remote path (a dask scheduler and two dask workers as separate processes) against a
# LocalCluster of two workers and serial, 1,000 x 20 years, whole processes side by side.
remote: $(VENV)/.installed
	$(PY) benchmarks/remote.py

# The size study of STATISTICS.md: placebo detectors, 200 replications of each shape (~2 minutes).
placebo: $(VENV)/.installed
	$(PY) benchmarks/placebo.py --write

clean:
	rm -rf $(VENV) data results
