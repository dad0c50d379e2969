# mhacourse — every target creates the virtual environment it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IP ?= 127.0.0.1
PORT ?= 8888
PYTEST_ARGS ?= -n 2
# Fast BLAS for MLX on Linux (mhacourse/blas.py): commands run through WITH_BLAS get an
# optimised BLAS preloaded when one is installed. MHACOURSE_BLAS=off turns it off; on macOS
# nothing changes.
WITH_BLAS = $(PY) mhacourse/blas.py exec --
# make test runs one BLAS thread per pytest worker (2 workers on 2 cores: more threads oversubscribe).
BENCH_ARGS ?=

.PHONY: lab test venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name mhacourse --display-name "mhacourse (MLX)" >/dev/null
	$(PY) mhacourse/blas.py kernelspec $(VENV)/share/jupyter/kernels/mhacourse
	touch $(STAMP)

venv: $(STAMP)

## lab: open the course in JupyterLab (prints the URL; no browser is launched)
lab: $(STAMP)
	$(WITH_BLAS) $(VENV)/bin/mhacourse lab --ip $(IP) --port $(PORT) --dir . --open notebooks

## demo: the lecture demo of the attention explorer in JupyterLab (prints the URL; no browser is launched)
.PHONY: demo
demo: $(STAMP)
	$(WITH_BLAS) $(VENV)/bin/mhacourse lab --ip $(IP) --port $(PORT) --dir . --open notebooks/demo_attention_explorer.ipynb

## test: the whole test suite (unit tests, and every notebook under nbval)
test: $(STAMP)
	$(PY) mhacourse/blas.py exec --threads 1 -- $(PY) -m pytest $(PYTEST_ARGS)

## bench: time attention, the BLAS, notebooks, widget, grader and the test suite -> bench-results/report.md
.PHONY: bench doctor
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

## doctor: which BLAS MLX runs on here, how fast, and what to do about it
doctor: $(STAMP)
	$(WITH_BLAS) $(VENV)/bin/mhacourse doctor

## strip: remove outputs, execution counts and widget state from every committed notebook
.PHONY: strip
strip: $(STAMP)
	$(PY) -m mhacourse.notebooks strip

.PHONY: exercises
## exercises: regenerate exercises/ and solutions/ from exercise_sources/
exercises: $(STAMP)
	$(VENV)/bin/mhacourse build-exercises

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
