# Two commands for a fresh machine: `make demo` (set up + main job) and `make test` (set up + tests).
# torch is installed first and pinned exactly: a looser spec pulls a multi-GB CUDA build here.
# animal-mnist ships the `animals` data but its metadata requires tensorflow: install it --no-deps.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet --no-deps animal-mnist==0.4
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	run=runs/sweeps/demo-$$(date +%Y%m%d-%H%M%S) && \
	$(VENV)/bin/ltrans sweep run sweeps/demo.yaml --out $$run && \
	$(VENV)/bin/ltrans report --examples $$run

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
