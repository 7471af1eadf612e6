# Two entry points for a fresh machine (Python 3.11, pip, make):
#   make demo   set up .venv and run the main job on the embedded default
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick test bench-ops bench-decode setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU build from the local wheel on these machines; GPU users install their own torch first.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# LRA ListOps (lite profile, generated data): softmax, ReLU linear, cosFormer and
# LeaP, about 2.5 minutes each on 2 cores, then the accuracy/throughput table.
DEMO_MECHANISMS ?= softmax linear cosformer leap
demo: $(STAMP)
	@for m in $(DEMO_MECHANISMS); do \
	  echo "== LRA ListOps (lite): $$m"; \
	  $(VENV)/bin/leapformer lra --task listops --attention $$m --profile lite --out runs/demo/listops-$$m || exit 1; \
	done
	$(VENV)/bin/leapformer lra-report --runs runs/demo --out runs/demo/report.md

demo-quick: $(STAMP)
	$(VENV)/bin/leapformer bench ops --quick

test: $(STAMP)
	$(PY) -m pytest -q

bench-ops: $(STAMP)
	$(PY) benchmarks/ops.py

bench-decode: $(STAMP)
	$(PY) benchmarks/decode.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
