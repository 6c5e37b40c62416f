# Every target that needs Python builds .venv first, from the package index, so that a fresh
# machine with only python3 (>= 3.10) and make can run them. Versions are pinned in
# constraints.txt so that CI and every developer test against the same botocore model.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-installed

.PHONY: install lint test test-fast demo bench schema dist dist-check clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt '.[sandbox,test,dev]'
	touch $(STAMP)

# The tests run against the installed wheel (not the source tree), so that what ships,
# the schema inside the package included, is what is tested.
install: $(STAMP)
	rm -rf build
	$(BIN)/python -m pip install -q --no-deps --force-reinstall .

# mypy --strict over reconciler, tools and tests: its files and options are in pyproject.toml.
lint: install
	$(BIN)/ruff check reconciler tests tools bench
	$(BIN)/mypy

# Four workers on two cores: most tests wait on a moto server or a child process, not the CPU.
# Each test starts its own servers on free loopback ports and its own temp folders, so
# workers share nothing.
test: lint
	$(BIN)/pytest -n 4 --dist worksteal

# Every tier but e2e (see tests/conftest.py): for a quick loop while developing.
test-fast: install
	$(BIN)/pytest -n 4 --dist worksteal -m "not e2e"

demo: install
	$(BIN)/python tools/demo.py

# Not part of `test`: wall times are measured and compared with the targets here, never
# asserted in tests. bench_plan starts its own moto server and proxy.
bench: install
	$(BIN)/python bench/bench_packaging.py
	$(BIN)/python bench/bench_plan.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_build.py

# Regenerate schemas/layers.schema.json from the installed botocore's Lambda model.
schema: install
	$(BIN)/python tools/gen_schema.py

# A wheel and an sdist in dist/ (PEP 517 build, in an isolated environment).
dist: $(STAMP)
	rm -rf dist build
	$(BIN)/python -m build --outdir dist .

# Each of them installed into a fresh virtualenv outside the source tree (dependencies from the
# package index), then both command names and a validate of the example.
dist-check: dist
	$(BIN)/python tools/dist_check.py dist

clean:
	rm -rf $(VENV) build dist *.egg-info .reconcile examples/.reconcile
