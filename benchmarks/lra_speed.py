"""LRA speed benchmark: training-step and inference throughput and peak memory of
the LRA classifier at 4k tokens for every mechanism, on CPU (Figure 1's x axis
and bubble size). Writes ``docs/results/lra-speed-cpu.md`` and ``.json``
(``--quick``: 1k tokens, ``lra-speed-cpu-quick.*``). Method:
``leapformer.bench.lra_speed``.

    python benchmarks/lra_speed.py [--quick] [--length 4k] [--batch 4] [--mechanisms ...]
"""

import argparse
import sys
from pathlib import Path

from leapformer.cli.bench import add_bench_lra_speed_arguments, run_bench_lra_speed

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_lra_speed_arguments(parser, out_dir_default=RESULTS)
    sys.exit(run_bench_lra_speed(parser.parse_args()))
