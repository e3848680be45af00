# fqn_det — `make demo` and `make test` set up .venv when needed (scripts/setup_env.sh).
# FQN_WHEELHOUSE=/path/to/wheels: install mmcv 2.1.0 from a prebuilt wheel instead of
# building it from source (~12 min on 2 cores).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo clean-demo clean lint

setup:
	@VENV=$(VENV) bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS) tests

demo: setup
	$(PY) tools/demo.py

lint: setup
	$(PY) -m ruff check .

clean-demo:
	rm -rf work_dirs/demo

clean: clean-demo
	rm -rf $(VENV) build *.egg-info .pytest_cache
