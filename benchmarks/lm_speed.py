"""LM speed benchmark: training tokens/s and peak memory of the lite causal LM at
contexts 512 and 2k (equal tokens per step), and generation ms/token at batch 1 at
positions 128, 4k and 16k (cache prefilled first), for softmax, linear, cosFormer
and LeaP, on CPU. Writes ``docs/results/lm-speed-cpu.md`` and ``.json``
(``--quick``: a smoke run, ``lm-speed-cpu-quick.*``). Method:
``leapformer.bench.lm_speed``.

    python benchmarks/lm_speed.py [--quick] [--contexts 512 2k] [--positions 128 4k 16k] ...
"""

import argparse
import sys
from pathlib import Path

from leapformer.cli.lm import add_lm_bench_arguments, run_lm_bench

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_lm_bench_arguments(parser, out_dir_default=RESULTS)
    sys.exit(run_lm_bench(parser.parse_args()))
