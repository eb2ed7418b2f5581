# fuxiops: the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= ml,world,ops,dev
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup system-deps demo test test-slow bench lint clean

$(BIN)/fuxiops: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# torch==2.13.0 is pinned in the `ml` extra: the CPU build (an unpinned torch pulls CUDA).
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/fuxiops ## create the virtual environment and install fuxiops with all extras

system-deps: ## Debian packages used by tests and the native stack (ecCodes tools, cdo, PostgreSQL, Chromium)
	bash scripts/system-deps.sh

demo: setup ## set everything up and run the demo on the embedded testbed world and shipped checkpoint
	$(BIN)/fuxiops demo

test: setup system-deps ## the test suite CI runs (fast; excludes `slow` and `gpu`)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

test-slow: setup system-deps ## long tests (minutes each)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m slow

bench: setup ## all benchmarks; results land in bench/results/
	for b in bench/[a-z]*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
