# Two entry points for a fresh machine (Python 3.11, pip, make):
#   make demo   set up .venv and run the main job on the embedded default
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick test mqar-grid bench-ops bench-contended bench-decode bench-lra-speed bench-gpu bench-export bench-st-speed bench-tts-speed lra-grid setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU build from the local wheel on these machines; GPU users install their own torch first.
	$(PY) -m pip install --quiet torch==2.13.0
	# constraints.txt: the versions the suite last passed with (a new release upstream
	# cannot break a clean clone's tests); pyproject keeps the looser ranges for users.
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The demo: MQAR recall (seq_len 256, 16 pairs, width 64, lr 1e-2) for softmax, ReLU linear,
# cosFormer and LeaP, two runs side by side on one thread each, with 95% intervals
# and a verdict; then attention time and decoding memory of softmax vs LeaP at
# 1k/4k/16k tokens. Interrupted? Run it again: finished runs are reused.
# Smaller: make demo STEPS=300 (training steps per mechanism; default 1000).
DEMO_MECHANISMS ?= softmax linear cosformer leap
STEPS ?=
demo: $(STAMP)
	$(VENV)/bin/leapformer demo --mechanisms $(DEMO_MECHANISMS) --out runs/demo$(if $(STEPS),-$(STEPS) --steps $(STEPS))

demo-quick: $(STAMP)
	$(VENV)/bin/leapformer bench ops --quick

test: $(STAMP)
	$(PY) -m pytest -q

bench-ops: $(STAMP)
	$(PY) benchmarks/ops.py

# The busy-machine case of issue 19: a second 2-thread torch process runs LeaP at 4k
# throughout while this one measures (docs/results/ops-cpu-contended1.md).
bench-contended: $(STAMP)
	$(VENV)/bin/leapformer bench ops --lengths 4k --scenarios fwd --contended 1 \
	  --contention-work leap --contention-threads 2 --out-dir docs/results --no-progress

bench-decode: $(STAMP)
	$(PY) benchmarks/decode.py

bench-lra-speed: $(STAMP)
	$(PY) benchmarks/lra_speed.py

# Triton kernels vs SDPA (flash), FLA and the torch chunk form; needs a CUDA GPU
bench-gpu: $(STAMP)
	$(PY) benchmarks/gpu.py

# the wait-k speech agent at 5/20/60 s of audio, softmax vs LeaP and the MLA mix
bench-st-speed: $(STAMP)
	$(PY) benchmarks/st_speed.py

# batch-1 mel synthesis at 1/5/20 s of audio, softmax vs LeaP, linear and cosFormer
bench-tts-speed: $(STAMP)
	$(PY) benchmarks/tts_speed.py

# the exported (ONNX) decoding step in onnxruntime vs eager PyTorch
bench-export: $(STAMP)
	$(PY) benchmarks/export.py

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

# The MQAR grid (Zoology's Fig. 2 on CPU: 6 mechanisms x widths 32-256 x 3 cells x
# 3 learning rates; resumable; about 20 CPU-hours per seed at one thread), then
# runs/mqar/report.md and figure.png. Two processes: split it with --cells.
mqar-grid: $(STAMP)
	$(VENV)/bin/leapformer mqar-grid --accept 0.99 --threads 1 --no-progress --out runs/mqar
