# Two commands on a fresh machine: `make demo` and `make test`.
# Both build the environment first when needed (see tools/setup_env.sh).
VENV ?= .venv
PYTHON ?= python3
ifeq ($(VENV),system)
PY := $(shell command -v $(PYTHON))
else
PY := $(VENV)/bin/python
endif
export VENV PYTHON

.PHONY: install test test-fast demo benchmark clean help

help:
	@echo "make demo     install if needed, then train + evaluate the small-object demo on CPU"
	@echo "make test     install if needed, then run the whole test suite"
	@echo "make test-fast  the test suite without the slow end-to-end runs (tests/e2e)"
	@echo "make install  build/update the environment ($(VENV)); VENV=system uses the current python"
	@echo "make benchmark  InceptionNeXt vs official vs ConvNeXt speed table"

install:
	@bash tools/setup_env.sh

# The test files run in TEST_WORKERS processes (pytest-xdist; each file in one,
# so that module fixtures are built once), one thread each, subprocesses too.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest tests -q -n $(TEST_WORKERS) --dist loadfile

test: install
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

demo: install
	$(PY) tools/demo.py

benchmark: install
	$(PY) tools/analysis_tools/benchmark.py

clean:
	rm -rf work_dirs data/demo .pytest_cache
