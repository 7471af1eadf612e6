"""SimulST speed benchmark: encoder ms per second of audio, decoder ms per step and the
computation-aware AL of the wait-k speech agent at growing utterance lengths (5, 20,
60 s), softmax vs LeaP and the MLA mix, untrained `lite`-size models, on CPU. Writes
``docs/results/st-speed-cpu.md`` and ``.json`` (``--quick``: 2 and 5 s, one run each,
``st-speed-cpu-quick.*``; ``--no-compile-step``: eager decoder steps,
``st-speed-cpu-eager.*``). Method: ``leapformer.bench.st_speed``.

    python benchmarks/st_speed.py [--quick] [--durations 5 20 60] [--reps 3] [--waitk 3 5 7]
                                  [--encoders incremental reencode] [--out-dir DIR]
"""

import argparse
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from leapformer.bench import load_line, machine_info, write_table
from leapformer.bench.st_speed import measure, render_markdown

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
SPECS = {"softmax": "enc=softmax,dec=softmax,cross=softmax",
         "leap": "enc=leap,dec=leap,cross=leap",
         "leap-dlin": "enc=leap,dec=linear,cross=leap"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 and 5 s, one run: a smoke test")
    p.add_argument("--durations", type=float, nargs="+", default=[5, 20, 60])
    p.add_argument("--encoders", nargs="+", default=["incremental"],
                   choices=["incremental", "reencode"])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--waitk", type=int, nargs="+", default=[3, 5, 7], metavar="K")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile-step", action="store_true",
                   help="eager decoder steps (default: the compiled fused step)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.durations, args.reps, args.waitk = [2, 5], 1, [5]
    torch.set_num_threads(args.threads)
    load = load_line()
    bar = tqdm(total=len(args.durations) * len(args.encoders) * len(args.waitk),
               desc="st speed")
    rows = [row for k in args.waitk
            for row in measure(SPECS, args.durations, encoders=tuple(args.encoders), k=k,
                               reps=args.reps, compile_step=not args.no_compile_step,
                               progress=bar.update)]
    bar.close()
    info = machine_info()
    command = "python benchmarks/st_speed.py " + shlex.join(sys.argv[1:])
    text = render_markdown(rows, info, command=command, load=load)
    stem = "st-speed-cpu" + "-eager" * args.no_compile_step + "-quick" * args.quick
    print(write_table(args.out_dir, stem, rows, info, command=command, load=load,
                      markdown=text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
