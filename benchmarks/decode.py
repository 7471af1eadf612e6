"""Decode benchmark: per-token latency and cache memory of a 6-layer, 512-wide
decoder-only stack on CPU, softmax (KV cache) vs linear, cosFormer and LeaP
(constant-size state), at positions 128, 1k, 4k, 16k and batch 1 and 8.

Writes ``docs/results/decode-cpu.md`` and ``decode-cpu.json`` (``--quick``:
positions 128 and 1k, batch 1, few repetitions, ``decode-cpu-quick.*``). The
full run takes a few minutes on 2 cores; the method is in
``leapformer.bench.decode``.

    python benchmarks/decode.py [--quick] [--out-dir DIR] [--positions 128 1k 4k 16k]
                                [--batches 1 8] [--mechanisms softmax leap] [--reps R]
"""

import argparse
import sys
from pathlib import Path

from leapformer.cli.bench import add_bench_decode_arguments, run_bench_decode

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_decode_arguments(parser, out_dir_default=RESULTS)
    sys.exit(run_bench_decode(parser.parse_args()))
