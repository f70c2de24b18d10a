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

test: install
	$(PY) -m pytest tests -q

test-fast: install
	$(PY) -m pytest tests -q -m "not slow"

demo: install
	$(PY) tools/demo.py

benchmark: install
	$(PY) tools/analysis_tools/benchmark.py

clean:
	rm -rf work_dirs data/demo .pytest_cache
