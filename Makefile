# simpo-bio — the two commands: `make demo` (main job) and `make test` (the suite CI runs).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
export WANDB_MODE ?= offline
export MUJOCO_GL ?= disable

.PHONY: install install-control test lint demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The pinned CPU torch goes in first so no CUDA wheels are pulled on CPU machines.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[dev,control,hf,drakes]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check simpo_bio tests bench

test: install lint
	$(BIN)/python -m pytest tests

demo: install
	$(BIN)/python -m simpo_bio.cli demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
