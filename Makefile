# The two commands: `make demo` runs the closed-loop demo, `make test` runs the tests.
# Both create .venv on first use and install everything into it. `make test` also builds two minimal
# flight-computer environments (the onboard install, with the ROS 2 Kilted and with the Jazzy wheels) and
# runs the onboard tests there, on the shipped pilot exported as a flight artefact: no PyTorch, no simulator.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := pip install --disable-pip-version-check -q
ONBOARD := .venv-onboard
JAZZY := .venv-jazzy
JAZZY_WHEELS := 'ros-jazzy-rclpy[fastrtps]' ros-jazzy-rcl-interfaces ros-jazzy-builtin-interfaces \
	ros-jazzy-sensor-msgs ros-jazzy-geometry-msgs ros-jazzy-std-msgs ros-jazzy-std-srvs ros-jazzy-nav-msgs \
	ros-jazzy-rosgraph-msgs ros-jazzy-diagnostic-msgs
ARTEFACT := build/onboard/cfc_ncp.onnx

.PHONY: demo test test-main test-onboard bench clean

$(STAMP): setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP) -e '.[test,ros]'
	touch $@

$(ONBOARD)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(ONBOARD)
	$(ONBOARD)/bin/$(PIP) -e '.[onboard]' pytest
	touch $@

$(JAZZY)/.installed: setup.py setup.cfg
	$(PYTHON) -m venv $(JAZZY)
	$(JAZZY)/bin/$(PIP) -e . pytest $(JAZZY_WHEELS)
	touch $@

demo: $(STAMP)
	$(BIN)/liquid-pilot demo

test: test-main test-onboard

test-main: $(STAMP)
	$(BIN)/python -m pytest -q test

test-onboard: $(STAMP) $(ONBOARD)/.installed $(JAZZY)/.installed
	$(BIN)/liquid-pilot export models/cfc_ncp.pt --onnx $(ARTEFACT)
	LIQUID_PILOT_ARTEFACT=$(ARTEFACT) AMENT_PREFIX_PATH=$(CURDIR)/$(ONBOARD) $(ONBOARD)/bin/python -m pytest -q test/onboard
	LIQUID_PILOT_ARTEFACT=$(ARTEFACT) AMENT_PREFIX_PATH=$(CURDIR)/$(JAZZY) $(JAZZY)/bin/python -m pytest -q test/onboard

bench: $(STAMP)
	for b in nn sim data workers train ros cold onboard safety; do $(BIN)/python bench/bench_$$b.py $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) $(ONBOARD) $(JAZZY) build *.egg-info
