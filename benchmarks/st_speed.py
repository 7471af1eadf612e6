"""SimulST speed benchmark: encoder ms per second of audio, decoder ms per step and the
computation-aware AL of the wait-k speech agent at growing utterance lengths (5, 20,
60 s), softmax vs LeaP and the MLA mix, untrained `lite`-size models, on CPU. Writes
``docs/results/st-speed-cpu.md`` and ``.json`` (``--quick``: 2 and 5 s, one run each,
``st-speed-cpu-quick.*``). Method: ``leapformer.bench.st_speed``.

    python benchmarks/st_speed.py [--quick] [--durations 5 20 60] [--reps 3] [--waitk 3 5 7]
                                  [--encoders incremental reencode] [--out-dir DIR]
"""

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from leapformer._io import atomic_write_text
from leapformer.bench import machine_info
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
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.durations, args.reps, args.waitk = [2, 5], 1, [5]
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    bar = tqdm(total=len(args.durations) * len(args.encoders) * len(args.waitk),
               desc="st speed")
    rows = [row for k in args.waitk
            for row in measure(SPECS, args.durations, encoders=tuple(args.encoders), k=k,
                               reps=args.reps, progress=bar.update)]
    bar.close()
    info = machine_info()
    command = "python benchmarks/st_speed.py " + shlex.join(sys.argv[1:])
    loadline = f"load average before the run {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)"
    stem = "st-speed-cpu" + ("-quick" if args.quick else "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out_dir / f"{stem}.json",
                      json.dumps({"machine": info, "command": command, "load": loadline,
                                  "rows": rows}, indent=2) + "\n")
    text = render_markdown(rows, info, command=command, load=loadline)
    atomic_write_text(args.out_dir / f"{stem}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
