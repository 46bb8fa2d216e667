# Two commands for a new user (see README):
#   make demo   install into .venv (first use) and run the default scenario's job
#   make test   install into .venv (first use) and run the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and exactly pinned, so nothing that depends on it pulls a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) evaluate.py

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV)
