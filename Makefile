# mhacourse — every target creates the virtual environment it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IP ?= 127.0.0.1
PORT ?= 8888
PYTEST_ARGS ?= -n 2 --dist loadscope

.PHONY: lab test venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name mhacourse --display-name "mhacourse (MLX)" >/dev/null
	touch $(STAMP)

venv: $(STAMP)

## lab: open the course in JupyterLab (prints the URL; no browser is launched)
lab: $(STAMP)
	$(VENV)/bin/mhacourse lab --ip $(IP) --port $(PORT) --dir . --open notebooks

## test: the whole test suite (unit tests, and every notebook under nbval)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

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
