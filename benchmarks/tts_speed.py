"""TTS decoding speed benchmark: decode seconds, real-time factor and ms per frame of
batch-1 mel synthesis at 1, 5 and 20 s of audio, softmax vs LeaP (and ReLU linear and
cosFormer), untrained `lite`-size TransformerTTS, with 1 and 3 frames per step, on
CPU. Writes ``docs/results/tts-speed-cpu.md`` and ``.json`` (``--quick``: 1 and 2 s,
one run, ``tts-speed-cpu-quick.*``; ``--no-compile-step``: the eager modules,
``tts-speed-cpu-eager.*``). Method: ``leapformer.bench.tts_speed``.

    python benchmarks/tts_speed.py [--quick] [--seconds 1 5 20] [--reps 3]
                                   [--frames-per-step 1 3] [--no-compile-step]
"""

import argparse
import shlex
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from leapformer.bench import load_line, machine_info, write_table
from leapformer.bench.tts_speed import measure, render_markdown

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
SPECS = {"softmax": "softmax", "leap": "leap", "linear": "linear", "cosformer": "cosformer"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 and 2 s, one run: a smoke test")
    p.add_argument("--seconds", type=float, nargs="+", default=[1, 5, 20])
    p.add_argument("--frames-per-step", type=int, nargs="+", default=[1, 3])
    p.add_argument("--specs", nargs="+", default=list(SPECS), choices=list(SPECS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile-step", action="store_true",
                   help="eager decoder steps (default: the compiled fused step)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.seconds, args.reps = [1, 2], 1
    torch.set_num_threads(args.threads)
    load = load_line()
    specs = {n: SPECS[n] for n in args.specs}
    bar = tqdm(total=len(args.seconds) * len(args.frames_per_step), desc="tts speed")
    rows = measure(specs, args.seconds, frames_per_step=tuple(args.frames_per_step),
                   reps=args.reps, compile_step=not args.no_compile_step, progress=bar.update)
    bar.close()
    info = machine_info()
    command = "python benchmarks/tts_speed.py " + shlex.join(sys.argv[1:])
    text = render_markdown(rows, info, command=command, load=load)
    stem = "tts-speed-cpu" + "-eager" * args.no_compile_step + "-quick" * args.quick
    print(write_table(args.out_dir, stem, rows, info, command=command, load=load,
                      markdown=text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
