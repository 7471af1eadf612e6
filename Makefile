# Two entry points for a fresh machine (Python 3.11, pip, make):
#   make demo   set up .venv and run the main job on the embedded default
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick test bench-ops bench-decode bench-lra-speed lra-grid setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU build from the local wheel on these machines; GPU users install their own torch first.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# LRA ListOps (lite profile, generated data): softmax, ReLU linear, cosFormer and
# LeaP, about 2.5 minutes each on 2 cores, then the accuracy/throughput/memory
# table and Figure 1 (runs/demo/figure1.png). Interrupted? Run it again: it resumes.
# Smaller: make demo STEPS=100 (training steps per mechanism; default: the profile's).
DEMO_MECHANISMS ?= softmax linear cosformer leap
STEPS ?=
demo: $(STAMP)
	$(VENV)/bin/leapformer lra-grid --tasks listops --mechanisms $(DEMO_MECHANISMS) --out runs/demo \
	  $(if $(STEPS),--steps $(STEPS))

demo-quick: $(STAMP)
	$(VENV)/bin/leapformer bench ops --quick

test: $(STAMP)
	$(PY) -m pytest -q

bench-ops: $(STAMP)
	$(PY) benchmarks/ops.py

bench-decode: $(STAMP)
	$(PY) benchmarks/decode.py

bench-lra-speed: $(STAMP)
	$(PY) benchmarks/lra_speed.py

# The whole LRA lite grid: five tasks x twelve mechanisms (resumable), then
# docs/results/lra-cpu.md-style table and Figure 1 with the 4k speed numbers.
LRA_TASKS ?= listops text retrieval image pathfinder
LRA_MECHANISMS ?= softmax linear elu cosformer leap performer nystromformer linformer \
	skyformer reformer bigbird informer
lra-grid: $(STAMP)
	$(VENV)/bin/leapformer lra-grid --tasks $(LRA_TASKS) --mechanisms $(LRA_MECHANISMS) \
	  --speed docs/results/lra-speed-cpu.json --out runs/lra-lite --no-progress

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
