# Two set-up commands for a fresh clone (see README):
#   make demo   — build .venv and run the end-to-end demo on synthetic audio
#   make test   — build .venv and run the test suite (what CI runs)
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: venv demo test test-fast clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/genre-ray demo

test: venv
	$(BIN)/python -m pytest -q -ra

test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration"

clean:
	rm -rf genre-ray-runs .pytest_cache
