# Two commands on a fresh machine:  `make demo`  (the quick reproduction)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel on this machine's disk (an unpinned torch pulls a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,tracr]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/wrapperlab demo --profile quick

test: install
	$(PY) -m pytest -q --durations=10

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs
