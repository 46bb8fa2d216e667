# Two commands for a new user (see README):
#   make demo   install into .venv (first use), train PPO briefly on the default scenario, evaluate it
#   make test   install into .venv (first use) and run the tests
#   PYTHON=python3.12   the interpreter .venv is made with (default python3); given while a .venv
#                       made by another interpreter exists, make refuses (remove it: make clean)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# an interpreter as the check below compares them: its version and the Python it is (or its venv is) built on
WHICH_PYTHON := import sys; print(".".join(map(str, sys.version_info[:2])), "(" + sys.base_prefix + ")")

.PHONY: demo test install clean python-check

# PYTHON= given (on the command line or in the environment) and .venv there: both must be the same
# Python, else .venv would go on being used with its own interpreter, the PYTHON= given ignored
python-check:
ifneq ($(filter command line environment,$(origin PYTHON)),)
	@if [ -x $(PY) ]; then \
	    want=$$($(PYTHON) -c '$(WHICH_PYTHON)') || { echo "error: PYTHON=$(PYTHON) does not run" >&2; exit 2; }; \
	    have=$$($(PY) -c '$(WHICH_PYTHON)'); \
	    if [ "$$want" != "$$have" ]; then \
	        echo "error: PYTHON=$(PYTHON) is Python $$want, but $(VENV) was made with Python $$have:" \
	            "remove it (make clean) and run make again to make it with PYTHON=$(PYTHON)," \
	            "or leave PYTHON= out to use $(VENV) as it is" >&2; \
	        exit 2; \
	    fi; \
	fi
endif

# (order-only: the check runs first every time, and never makes the install stale)
$(STAMP): pyproject.toml | python-check
	# made again when it has no pip: a venv whose creation was interrupted has python but not pip
	$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly pinned, so nothing that depends on it pulls a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# a short PPO run on the default scenario (grid_4x4), then its policy beside the six classical
# controllers and the two tuned on training demand (configs/controller/*_tuned_grid_4x4.yaml)
# on held-out demand (the last checkpoint: best.zip is picked on these same seeds)
DEMO := outputs/demo
demo: $(STAMP)
	rm -rf $(DEMO)  # a new run each time (train.py refuses to train into an earlier run's folder)
	$(PY) train.py train.total_agent_steps=300000 train.eval_every=100000 train.threads=1 hydra.run.dir=$(DEMO)/train
	$(PY) evaluate.py checkpoint=$(DEMO)/train/checkpoints/last.zip hydra.run.dir=$(DEMO)/evaluate \
	    "controllers=[fixed_time,fixed_time_webster,max_pressure,sotl,efficient_mp,advanced_mp,max_pressure_tuned,sotl_tuned]"

# one pytest-xdist worker per core, whole test files to a worker (their shared fixtures are built
# once); `pytest -q` alone runs the same tests serially
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile

clean:
	rm -rf $(VENV)
