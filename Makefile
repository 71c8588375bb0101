# The book: text notebooks -> papermill (profile from PROFILE) -> Jupyter Book -> _build/html.
#   make book                 build the HTML book (default; reuses stored results)
#   make execute PROFILE=full rerun every notebook, recomputing results, then build the HTML
#   make execute PROFILE=full TASKS="fc5-cifar10 vgg16-cifar10"
#                             rerun only those Part III tasks and the summary over them (no HTML)
#   make execute JOBS=1       one notebook at a time (default: one per core for cpu and smoke)
#   make test                 the test suite
#   make benchmark            curvature, limit and sharding benchmarks: ratios side by side
#   make clean                remove builds (keeps .venv, data and stored results)
# Every target sets itself up first: a virtual environment in .venv and the offline data.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := book
MAKEFLAGS += --no-builtin-rules

PROFILE ?= cpu
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DATA_READY := $(VENV)/.data-ready

EXECUTED_DIR := _build/executed/$(PROFILE)
# Text notebooks are the .md files whose front matter names a kernel (jupytext MyST format).
# The task template is executed once per page its front matter lists (a papermill parameter).
TASK_TEMPLATE := book/experiments/task.md
TEXT_NOTEBOOKS := $(filter-out $(TASK_TEMPLATE),$(shell grep -rl --include='*.md' '^kernelspec:' book | sort))
TASK_PAGES := $(shell sed -n '/^template:/,/^---/s/^    \([a-z0-9_]*\): .*/\1/p' $(TASK_TEMPLATE))
# TASKS (task names, e.g. "fc5-cifar10 vgg16-cifar10") narrows `make tasks` and `make execute` to
# those task pages and the summary, which reads the same list from $PRUNELIMIT_TASKS.
TASKS ?=
ifneq ($(strip $(TASKS)),)
UNKNOWN_TASKS := $(filter-out $(TASK_PAGES),$(subst -,_,$(TASKS)))
$(if $(UNKNOWN_TASKS),$(error unknown task(s) $(subst _,-,$(UNKNOWN_TASKS)): choose from $(subst _,-,$(TASK_PAGES))))
TASK_PAGES := $(filter $(subst -,_,$(TASKS)),$(TASK_PAGES))
export PRUNELIMIT_TASKS := $(TASKS)
endif
TASK_EXECUTED := $(patsubst %,$(EXECUTED_DIR)/book/experiments/%.ipynb,$(TASK_PAGES))
PAGES := $(shell find book -type f -not -path '*/_build/*' -not -path '*/__pycache__/*' | sort)
# The longest notebooks first (the exact spectra, Part IV's baselines, whose network the other
# Part IV pages reuse, then the tasks), so that notebooks run side by side finish close together.
FIRST := $(EXECUTED_DIR)/book/experiments/exact_spectra.ipynb \
  $(EXECUTED_DIR)/book/heuristics/baselines.ipynb
EXECUTED := $(FIRST) $(TASK_EXECUTED) \
  $(filter-out $(FIRST),$(patsubst %.md,$(EXECUTED_DIR)/%.ipynb,$(TEXT_NOTEBOOKS)))
# `make execute` runs JOBS notebooks side by side, each with CORES / JOBS threads: by default one
# per core on one thread for the cpu and smoke profiles (two one-thread notebooks got through
# 1.2-1.4x the work of one two-thread notebook on a 2-core machine), and one at a time for the
# full profile, whose notebooks share one GPU.
CORES ?= $(shell nproc 2>/dev/null || echo 1)
JOBS ?= $(if $(filter full,$(PROFILE)),1,$(CORES))
THREADS := $(shell echo $$(( $(CORES) / $(JOBS) > 1 ? $(CORES) / $(JOBS) : 1 )))
NOTEBOOK := OMP_NUM_THREADS=$(THREADS) $(PY) -m companion.pipeline execute
LIBRARY := $(shell find lib book/_companion -name '*.py' | sort)
# Jupyter Book writes index.html only when missing, so a stamp marks a finished build.
BOOK_BUILT := _build/html/.book-built
PROFILE_MARK := _build/profile

.PHONY: book tasks execute test benchmark clean setup data announce-notebooks FORCE

book: $(BOOK_BUILT)

setup: $(INSTALLED)
data: $(DATA_READY)

# The virtual environment needs Python 3.11 or newer (pyproject.toml); $(PYTHON) is checked
# before it is created. Then torch first and alone, so pip takes the local CPU wheel; then the
# exact pins; then the package.
$(INSTALLED): requirements.txt requirements-nodeps.txt pyproject.toml
	@test -x $(PY) || { \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	    echo "error: the book needs Python 3.11 or newer, and $(PYTHON) is" \
	      "$$(command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 || echo 'not found')." >&2; \
	    echo "       Install a newer Python and run make PYTHON=python3.11 (or newer)." >&2; \
	    exit 1; }; \
	  echo "Creating the virtual environment $(VENV) with $$($(PYTHON) --version 2>&1) ..."; \
	  $(PYTHON) -m venv $(VENV); }
	@echo "Installing packages into $(VENV), several minutes: torch (CPU wheel) first ..."
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$$(grep -E '^torch==' requirements.txt)"
	@echo "Installing the pinned requirements and prunelimit itself ..."
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps --editable .
	touch $@

# Finds Fashion-MNIST, or installs its Debian package (apt-get as root or through sudo; it says so
# first), or downloads it.
$(DATA_READY): $(INSTALLED)
	$(PY) -m prunelimit.data setup
	touch $@

# One executed notebook per text notebook; a failing cell deletes the half-written output.
$(EXECUTED_DIR)/%.ipynb: %.md $(LIBRARY) | $(INSTALLED) $(DATA_READY) announce-notebooks
	$(NOTEBOOK) $< $@ --profile $(PROFILE) $(if $(RECOMPUTE_SINCE),--recompute-since $(RECOMPUTE_SINCE))

$(TASK_EXECUTED): $(EXECUTED_DIR)/book/experiments/%.ipynb: $(TASK_TEMPLATE) $(LIBRARY) | $(INSTALLED) $(DATA_READY) announce-notebooks
	$(NOTEBOOK) $< $@ --page $* --profile $(PROFILE) $(if $(RECOMPUTE_SINCE),--recompute-since $(RECOMPUTE_SINCE))

# Each task page computes its task; the summary and the intro's results-at-a-glance box read
# the tasks' stored results, so they run after the task pages.
$(EXECUTED_DIR)/book/intro.ipynb $(EXECUTED_DIR)/book/experiments/summary.ipynb: $(TASK_EXECUTED)
# Pages that reuse a network another page trains run after that page (never both at once): the
# data-size page takes FC5's, Part IV's pages the baselines' seed-0 network.
$(EXECUTED_DIR)/book/experiments/data_size.ipynb: | $(filter %/fc5_cifar10.ipynb,$(TASK_EXECUTED))
$(filter-out %/baselines.ipynb %/index.ipynb,$(filter $(EXECUTED_DIR)/book/heuristics/%,$(EXECUTED))): \
  | $(EXECUTED_DIR)/book/heuristics/baselines.ipynb

# Says, once, how many notebooks are about to run: those whose executed version is missing or
# older than the text notebook or the library.
ANNOUNCED := $(if $(filter tasks,$(MAKECMDGOALS)),book/experiments/summary.md,$(TEXT_NOTEBOOKS)) \
  $(patsubst %,book/experiments/%.md,$(TASK_PAGES))
announce-notebooks:
	@n=0; for page in $(ANNOUNCED); do \
	  source=$$page; [ -f "$$source" ] || source=$(TASK_TEMPLATE); \
	  executed=$(EXECUTED_DIR)/$${page%.md}.ipynb; \
	  if [ ! -f "$$executed" ] || [ -n "$$(find $$source $(LIBRARY) -newer "$$executed" -print -quit)" ]; \
	  then n=$$((n + 1)); fi; \
	done; \
	[ $$n -eq 0 ] || echo "Executing $$n of $(words $(ANNOUNCED)) notebooks (profile $(PROFILE);" \
	  "$(if $(RECOMPUTE_SINCE),results stored in results/$(PROFILE)/ before this run are recomputed,results stored in results/$(PROFILE)/ are reused)) ..."

# Rewritten only when PROFILE changes, so switching profiles rebuilds the HTML.
$(PROFILE_MARK): FORCE
	@mkdir -p $(@D)
	@[ "$$(cat $@ 2>/dev/null)" = "$(PROFILE)" ] || echo "$(PROFILE)" > $@

$(BOOK_BUILT): $(EXECUTED) $(PAGES) _config.yml _toc.yml $(PROFILE_MARK) | $(INSTALLED)
	$(PY) -m companion.pipeline build --executed $(EXECUTED_DIR)
	touch $@

# The task pages (those of TASKS when given) and the Part III summary, without the HTML book.
SUMMARY_EXECUTED := $(EXECUTED_DIR)/book/experiments/summary.ipynb
tasks: $(TASK_EXECUTED) $(SUMMARY_EXECUTED)
	@echo "Executed $(words $(TASK_EXECUTED)) task page(s) and the summary into $(EXECUTED_DIR);" \
	  "the HTML book needs every page: make book PROFILE=$(PROFILE)"

# Recomputes every result stored before the run started. The start time is kept in a file until
# the run succeeds, so an interrupted `make execute` resumes: finished notebooks and stages stay.
EXECUTE_SINCE := _build/execute-since-$(PROFILE)
execute: | $(INSTALLED) $(DATA_READY)
	@mkdir -p _build
	@[ -f $(EXECUTE_SINCE) ] || { rm -rf $(if $(strip $(TASKS)),$(TASK_EXECUTED) $(SUMMARY_EXECUTED),$(EXECUTED_DIR)); \
	  date +%s > $(EXECUTE_SINCE); }
	$(MAKE) --no-print-directory -j$(JOBS) $(if $(strip $(TASKS)),tasks,book) PROFILE=$(PROFILE) \
	  RECOMPUTE_SINCE=$$(cat $(EXECUTE_SINCE))
	rm -f $(EXECUTE_SINCE)

test: | $(INSTALLED) $(DATA_READY)
	$(PY) -m ruff check lib book/_companion tests benchmarks
	$(PY) -m ruff format --check lib book/_companion tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest

benchmark: | $(INSTALLED) $(DATA_READY)
	$(PY) benchmarks/curvature.py
	$(PY) benchmarks/limit.py
	$(PY) benchmarks/distributed.py

clean:
	rm -rf _build

FORCE:
