# The two commands: `make demo` runs the closed-loop demo, `make test` runs the tests.
# Both create .venv on first use and install everything into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test,ros]'
	touch $@

demo: $(STAMP)
	$(BIN)/liquid-pilot demo

test: $(STAMP)
	$(BIN)/python -m pytest -q test

bench: $(STAMP)
	for b in nn sim data workers ros; do $(BIN)/python bench/bench_$$b.py $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
