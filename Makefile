# Two commands on a fresh machine:  `make demo`  (the quick reproduction)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# torch is installed first, pinned. Where pip finds only the CUDA build of torch==2.13.0 (a multi-GB download), point
# it at the CPU wheels:  make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# --no-compile: pip's byte-compiling of every installed file was half of the install (torch 34 -> 11 s, the package
# and its dependencies 30 -> 19 s, 2-core AVX2 EPYC, 2026-12-08); Python writes the bytecode of what it imports on
# first use instead (about 2 s, once)
PIP = $(PY) -m pip install -q --no-compile
TORCH_PIP = $(PIP) torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: install install-all demo reproduce-all table5 stories stories-deep test test-fast bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# what the PCFG and stories reproductions need: no JAX (tracr extra) and no Ray (ray extra)
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(TORCH_PIP)
	$(PIP) -e .
	touch $@

# the tests and the Tracr experiments need the extras too
$(VENV)/.installed-all: pyproject.toml $(VENV)/.installed
	$(PIP) -e '.[test,tracr,ray,slurm,tensorboard,hf,tl]'
	touch $@

install: $(VENV)/.installed
install-all: $(VENV)/.installed-all

# the quick reproduction of the paper's Counter experiment with its negative controls: ~7 min on 2 AVX-512 cores in bf16
# (2026-12-07, estimated with today's install), 16 min on 2 AVX2-only cores in fp32 (measured on a fresh clone
# 2026-12-08, docs/reproduce.md; the goal is 15); report in runs/report/
demo: install
	$(VENV)/bin/wrapperlab reproduce pcfg-counter --profile quick --workers 2 --profile-time

# the paper's experiments on the quick profile into the same store and report: the Counter and Indexer, the data
# interventions (randFT, PT mixing, jailbreak tokens; they reuse the Counter's plain cell), the Tracr pair and both
# story specs — about 4 h on 2 cores, summed from their separate runs (docs/reproduce.md, docs/stories.md; not
# yet timed end to end in one call);
# pcfg-table5, pcfg-depth and pcfg-pretraining have their own targets or commands
reproduce-all: install-all
	$(VENV)/bin/wrapperlab reproduce pcfg-counter pcfg-indexer pcfg-randft pcfg-mixing pcfg-jailbreak tracr-counter \
	  tracr-max stories-twist stories-deep --profile quick --workers 2

# the paper's Table 5 grid (3 priors x 4 C_Tr x 3 lrs, 3 seeds, analyses on C_Tr = 0 and 1 of every prior and lr;
# the claims it tests are in docs/reproduce.md): 1 h 34 min on 2 cores, measured 2026-12-03
table5: install
	$(VENV)/bin/wrapperlab reproduce pcfg-table5 --profile quick --workers 2 --profile-time

# the TinyStories-style Twist experiment (issue 6) on the quick profile, 3 seeds, into the same store and report
stories: install
	$(VENV)/bin/wrapperlab reproduce stories-twist --profile quick --workers 2

# the 6-block story model: Twist probes per layer beside the random-init twin, one deletion and its reFT (~47 min)
stories-deep: install
	$(VENV)/bin/wrapperlab reproduce stories-deep --profile quick --workers 2

test: install-all
	$(PY) -m pytest -q --durations=10

test-fast: install-all
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/throughput.py

# wheels of what wrapperlab needs beyond the GPU machine's image (it has torch, numpy, transformers, peft, pyyaml, tqdm,
# matplotlib, safetensors, tokenizers; not pydantic and its own needs), for CPython 3.12 on manylinux x86-64 and
# pinned to the versions this venv tests with, into .gpu-wheels/ (ignored): a device run carries them with
# carry=[".gpu-wheels"] and installs them offline (docs/gpu.md)
GPU_WHEEL_PKGS := pydantic pydantic-core annotated-types typing-inspection typing-extensions
GPU_WHEEL_PINS = from importlib.metadata import version; print(' '.join(p + '==' + version(p) for p in '$(GPU_WHEEL_PKGS)'.split()))
.PHONY: gpu-wheels
gpu-wheels: install
	rm -rf .gpu-wheels
	$(PY) -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
	  --implementation cp -d .gpu-wheels $$($(PY) -c "$(GPU_WHEEL_PINS)")
	ls .gpu-wheels

clean:
	rm -rf $(VENV) runs
