# Two commands for a new user (see README):
#   make demo   install into .venv (first use), train PPO briefly on the default scenario, evaluate it
#   make test   install into .venv (first use) and run the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
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
