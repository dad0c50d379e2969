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
	$(PY) -m pip install --quiet -e ".[dev,site,lab,grading]"
	@# the course's kernel, "mhacourse (MLX)", in the venv: it starts MLX on the optimised BLAS (Linux)
	$(PY) -c "from mhacourse.start import register_kernel; register_kernel('env')"
	touch $(STAMP)

venv: $(STAMP)

## lab: open the course in JupyterLab (prints the URL; no browser is launched)
lab: $(STAMP)
	$(WITH_BLAS) $(VENV)/bin/mhacourse lab --ip $(IP) --port $(PORT) --dir . --open notebooks

## demo: the lecture demo of the attention explorer in JupyterLab, in its own emptied workspace "demo"
##   (prints the URL; no browser is launched)
.PHONY: demo
demo: $(STAMP)
	$(WITH_BLAS) $(VENV)/bin/mhacourse lab --ip $(IP) --port $(PORT) --dir . --open notebooks/demo_attention_explorer.ipynb --workspace demo

## test: the whole test suite (unit tests, and every notebook under nbval)
test: $(STAMP)
	$(PY) mhacourse/blas.py exec --threads 1 -- $(PY) -m pytest $(PYTEST_ARGS)

## check: the fast lane: unit tests without notebooks, browsers, sandboxed grading or slow builds
##   (under 60 s on 2 cores; the markers are applied in conftest.py and registered in pyproject.toml)
CHECK_MARKERS ?= not slow and not browser and not notebook and not grading
.PHONY: check
check: $(STAMP)
	$(PY) mhacourse/blas.py exec --threads 1 -- $(PY) -m pytest tests -m "$(CHECK_MARKERS)" $(PYTEST_ARGS)

## bench: time attention, the BLAS, notebooks, widget, grader and the test suite -> bench-results/report.md
.PHONY: bench doctor
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

## doctor: which BLAS MLX runs on here, how fast, and what to do about it
doctor: $(STAMP)
	$(WITH_BLAS) $(VENV)/bin/mhacourse doctor

## gpu-check: parity tests and the layer benchmark (B=4, H=16, D_h=128, bfloat16, L up to 8192) on
##   this machine's backend -> artifacts/gpu-check.json. With an NVIDIA GPU it first installs MLX's
##   CUDA wheels (the cuda extra) into $(CUDA_VENV); elsewhere it is a CPU dry run that says so.
CUDA_VENV ?= .venv-cuda
GPU_CHECK_OUT ?= artifacts/gpu-check.json
GPU_CHECK_ARGS ?=
.PHONY: gpu-check
gpu-check:
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(CUDA_VENV)/.installed && \
		$(CUDA_VENV)/bin/python -m mhacourse.gpu_check --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS); \
	else \
		$(MAKE) --no-print-directory venv && \
		$(WITH_BLAS) $(PY) -m mhacourse.gpu_check --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS); \
	fi

# mlx-cpu and mlx-cuda-13 both install mlx/lib/libmlx.so: drop the CPU wheel, then put the CUDA one back.
$(CUDA_VENV)/.installed: pyproject.toml
	test -x $(CUDA_VENV)/bin/python || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CUDA_VENV)/bin/python -m pip install --quiet -e ".[dev,cuda,lab,grading]"
	$(CUDA_VENV)/bin/python -m pip uninstall --quiet -y mlx-cpu
	$(CUDA_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps \
		"mlx-cuda-13==$$($(CUDA_VENV)/bin/python -c 'import importlib.metadata as m; print(m.version("mlx"))')"
	$(CUDA_VENV)/bin/python -c "import mlx.core as mx; assert mx.cuda.is_available(), 'MLX sees no CUDA GPU'"
	touch $@

## strip: remove outputs, execution counts and widget state from every committed notebook
.PHONY: strip
strip: $(STAMP)
	$(PY) -m mhacourse.notebooks strip

.PHONY: exercises
## exercises: regenerate exercises/ and solutions/ from exercise_sources/
exercises: $(STAMP)
	$(VENV)/bin/mhacourse build-exercises

## site: the whole course as a static website in site/ (open site/index.html, or serve it:
##   python -m http.server -d site). Lessons run through the cache in build/site-cache, so a rebuild
##   reruns only the notebooks whose code changed; page weights -> build/site-weights.json.
SITE_JOBS ?= 2
.PHONY: site
site: $(STAMP)
	$(WITH_BLAS) $(PY) -m sphinx -b html -j $(SITE_JOBS) -W --keep-going -d build/site-doctrees docs site

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info
