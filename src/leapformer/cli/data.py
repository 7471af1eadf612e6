"""``leapformer data listops|pathfinder|spoken-bible``: generate task data in the official
formats (``data mqar`` is added by :mod:`leapformer.cli.mqar`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leapformer.cli._args import parse_positive, parse_seed


def add_data_listops_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``leapformer data listops``."""
    from leapformer.data.listops import LRA_MAX_LEN, LRA_MIN_LEN

    parser.add_argument("--n", type=parse_positive, required=True, help="number of examples")
    parser.add_argument("--seed", type=parse_seed, default=0,
                        help="random seed, >= 0 (default 0)")
    parser.add_argument("--min-len", type=parse_positive, default=LRA_MIN_LEN,
                        help=f"shortest length, inclusive, in operator/digit/']' tokens "
                        f"(default {LRA_MIN_LEN}: LRA keeps 500 < length < 2000)")
    parser.add_argument("--max-len", type=parse_positive, default=LRA_MAX_LEN,
                        help=f"longest length, inclusive (default {LRA_MAX_LEN})")
    parser.add_argument("--max-depth", type=parse_positive, default=10,
                        help="tree levels at most, root = 1 (default 10)")
    parser.add_argument("--max-args", type=parse_positive, default=10,
                        help="arguments per operator at most, at least 2 (default 10)")
    parser.add_argument("--p-operator", type=float, default=0.25,
                        help="probability that a node above the last level is an operator "
                        "(default 0.25)")
    parser.add_argument("--out", type=Path, required=True, help="TSV file to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_data_listops(args: argparse.Namespace) -> int:
    """Generate ListOps examples, write the TSV file, print a one-line summary."""
    from collections import Counter

    from tqdm import tqdm

    from leapformer.data.listops import generate_listops, write_tsv

    with tqdm(total=args.n, desc="listops", unit="ex", disable=args.no_progress,
              file=sys.stderr) as bar:
        try:
            examples = generate_listops(
                args.n, seed=args.seed, min_len=args.min_len, max_len=args.max_len,
                max_depth=args.max_depth, max_args=args.max_args, p_operator=args.p_operator,
                progress=bar.update)
        except ValueError as err:
            bar.close()
            print(f"error: leapformer data listops: {err}", file=sys.stderr)
            return 2
    path = write_tsv(examples, args.out)
    lengths = [ex.length for ex in examples]
    labels = Counter(ex.label for ex in examples)
    histogram = " ".join(f"{d}:{labels[d]}" for d in range(10))
    print(f"wrote {len(examples)} examples to {path}: length mean "
          f"{sum(lengths) / len(lengths):.1f} min {min(lengths)} max {max(lengths)}; "
          f"labels {histogram}")
    return 0


def run_data_pathfinder(args: argparse.Namespace) -> int:
    from leapformer.data.pathfinder import generate_pathfinder, save_pathfinder_dir

    images, labels = generate_pathfinder(args.n, seed=args.seed)
    save_pathfinder_dir(images, labels, args.out, overwrite=args.overwrite)
    print(f"wrote {len(labels)} images ({int(labels.sum())} connected) to {args.out} "
          "in the official LRA pathfinder32 layout")
    return 0


def _int_in(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {v}")
        return v
    return parse


def add_data_spoken_bible_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``leapformer data spoken-bible``."""
    from leapformer.data.speech.espeak import DEFAULT_PITCH, DEFAULT_RATE, DEFAULT_VOICE
    from leapformer.data.speech.spoken_bible import DEFAULT_MAX_VERSES

    parser.add_argument("--out", type=Path, required=True,
                        help="folder of the build (wav/, manifests); an unfinished build "
                        "there is resumed")
    parser.add_argument("--max-verses", type=parse_positive, default=DEFAULT_MAX_VERSES,
                        help=f"verses to speak, shared by train/dev/test in proportion "
                        f"(default {DEFAULT_MAX_VERSES})")
    parser.add_argument("--all", action="store_true",
                        help="speak every verse of the en-ja corpus (31,067; overrides "
                        "--max-verses)")
    parser.add_argument("--seed", type=parse_seed, default=0,
                        help="which verses, and the rate/pitch jitter (default 0)")
    parser.add_argument("--voice", default=DEFAULT_VOICE,
                        help=f"espeak-ng voice (default {DEFAULT_VOICE})")
    parser.add_argument("--rate", type=_int_in(80, 450), default=DEFAULT_RATE,
                        help=f"words per minute (default {DEFAULT_RATE})")
    parser.add_argument("--pitch", type=_int_in(0, 100), default=DEFAULT_PITCH,
                        help=f"pitch 0-100 (default {DEFAULT_PITCH})")
    parser.add_argument("--rate-jitter", type=_int_in(0, 200), default=0,
                        help="vary each verse's rate uniformly by +-N words per minute "
                        "(default 0: fixed)")
    parser.add_argument("--pitch-jitter", type=_int_in(0, 50), default=0,
                        help="vary each verse's pitch uniformly by +-N (default 0: fixed)")
    parser.add_argument("--sample-rate", type=_int_in(8000, 48000), default=16000,
                        help="rate of the wav files (default 16000, MuST-C's; 22050 keeps "
                        "espeak-ng's own)")
    parser.add_argument("--max-chars", type=parse_positive,
                        help="leave out training verses longer than this many characters "
                        "on either side (default: keep all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_data_spoken_bible(args: argparse.Namespace) -> int:
    """Build (or resume) the spoken Bible, print a one-line summary."""
    from tqdm import tqdm

    from leapformer.data.speech.spoken_bible import build_spoken_bible

    with tqdm(desc="spoken-bible", unit="verse", disable=args.no_progress,
              file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        info = build_spoken_bible(
            args.out, max_verses=None if args.all else args.max_verses, seed=args.seed,
            voice=args.voice, rate=args.rate, pitch=args.pitch, rate_jitter=args.rate_jitter,
            pitch_jitter=args.pitch_jitter, sample_rate=args.sample_rate,
            max_chars=args.max_chars, progress=progress)
    verses = " ".join(f"{s} {n}" for s, n in info["verses"].items())
    hours = sum(info["hours"].values())
    print(f"wrote the spoken Bible to {args.out}: {verses} verses, {hours:.2f} h of audio "
          f"({info['synthesised']} synthesised, {info['reused']} reused, "
          f"{info['seconds']:.0f} s); manifests {{train,dev,test}}_{{st,asr}}.tsv")
    return 0


def register(commands) -> argparse._SubParsersAction:
    """Adds ``data``; returns its sub-command set so other families can add data sets."""
    data = commands.add_parser("data", help="generate task data")
    datasets = data.add_subparsers(dest="dataset", required=True)
    listops = datasets.add_parser("listops", help="LRA ListOps examples as an official TSV file")
    add_data_listops_arguments(listops)
    listops.set_defaults(func=run_data_listops)
    pathfinder = datasets.add_parser("pathfinder", help="Pathfinder-32 images in the official "
                                     "LRA folder layout")
    pathfinder.add_argument("--n", type=parse_positive, required=True, help="number of images")
    pathfinder.add_argument("--seed", type=parse_seed, default=0, help="random seed, >= 0")
    pathfinder.add_argument("--out", type=Path, required=True, help="release root folder")
    pathfinder.add_argument("--overwrite", action="store_true")
    pathfinder.set_defaults(func=run_data_pathfinder)
    spoken = datasets.add_parser(
        "spoken-bible", help="English WEB verses spoken by espeak-ng: wavs (16 kHz by default) and "
        "speech->ja / speech->en manifests (resumable)")
    add_data_spoken_bible_arguments(spoken)
    spoken.set_defaults(func=run_data_spoken_bible)
    from leapformer.cli.mqar import add_data_mqar

    add_data_mqar(datasets)
    return datasets
