"""Ops benchmark: leap, cosformer, linear (ReLU) and elu attention vs softmax (torch SDPA)
on CPU; rows use the mechanism registry's names, plus the installed peers (other
libraries' causal linear attention, ``--peers``).

Writes ``docs/results/ops-cpu.md`` and ``ops-cpu.json`` (``--quick``:
``ops-cpu-quick.*``; ``--contended N``: ``ops-cpu-contended<N>.*``). The full run takes a few minutes on 2 cores; the method
and FLOP definitions are in ``leapformer.bench.ops``.

    python benchmarks/ops.py [--quick] [--out-dir DIR] [--lengths 1k 4k 16k]
"""

import argparse
import sys
from pathlib import Path

from leapformer.cli.bench import add_bench_ops_arguments, run_bench_ops

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_ops_arguments(parser, out_dir_default=RESULTS)
    sys.exit(run_bench_ops(parser.parse_args()))
