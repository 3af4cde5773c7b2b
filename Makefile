# Two commands on a fresh machine:  `make demo`  (the quick reproduction)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo reproduce-all table5 stories test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU wheel on this machine's disk (an unpinned torch pulls a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,tracr,ray]'
	touch $@

install: $(VENV)/.installed

# the quick reproduction of the paper's Counter experiment with its negative controls: 17.5 min on 2 cores
# (measured 2026-12-01, docs/reproduce.md; the goal is 15), report in runs/report/report.html
demo: install
	$(VENV)/bin/wrapperlab reproduce pcfg-counter --profile quick --workers 2 --profile-time

# all four shipped experiments on the quick profile into the same store and report (estimated 45-60 min on 2 cores;
# the Tracr pair took 18 min measured beside other work, the Indexer has not yet been timed end to end)
reproduce-all: install
	$(VENV)/bin/wrapperlab reproduce pcfg-counter pcfg-indexer tracr-counter tracr-max --profile quick --workers 2

# the paper's Table 5 grid (3 priors x 4 C_Tr x 3 lrs, 3 seeds, analyses on C_Tr = 0 and 1 of every prior and lr;
# the claims it tests are in docs/reproduce.md): about 2.5 h on 2 cores estimated from the demo's node times
table5: install
	$(VENV)/bin/wrapperlab reproduce pcfg-table5 --profile quick --workers 2 --profile-time

# the TinyStories-style Twist experiment (issue 6) on the quick profile, 3 seeds, into the same store and report
stories: install
	$(VENV)/bin/wrapperlab reproduce stories-twist --profile quick --workers 2

test: install
	$(PY) -m pytest -q --durations=10

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs
