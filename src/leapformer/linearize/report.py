"""The linearisation report: perplexities of a teacher and its conversions, compared
block by block on the same test stream.

Inputs are ``leapformer lm eval --out FILE.json`` results (of ``--hf DIR`` folders:
the teacher, ``linearize`` outputs, ``OUT/stage1``; or of ``--run DIR`` LM runs,
e.g. a LeaP trained from scratch), each with a label. Every result records its
test stream in blocks (``block_nll``, ``block_tokens``), so:

* each row gets a 95% bootstrap interval of its perplexity (blocks resampled);
* each pair scored on the same blocks (same split, window, stride and tokens) gets
  the perplexity ratio with a *paired* interval (the same resampled blocks for
  both), "separated" when it excludes 1
  (:func:`~leapformer.report.intervals.block_bootstrap`).

These intervals cover test-set noise only: one trained model per row, no seeds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from leapformer.report.intervals import Interval, block_bootstrap
from leapformer._io import read_json_object, require_keys

__all__ = ["load_evals", "comparable", "render_linearize_report"]

KEYS = ("ppl", "split", "window", "stride", "block_nll", "block_tokens")


def load_evals(labelled: list[tuple[str, str | Path]]) -> list[tuple[str, dict]]:
    """``[(label, result)]`` from ``[(label, path of an 'lm eval --out' JSON)]``; a file
    without blocks (written before they were recorded) is an error naming it."""
    out, seen = [], set()
    for label, path in labelled:
        if label in seen:
            raise ValueError(f"label {label!r} is given twice")
        seen.add(label)
        res = read_json_object(Path(path))
        require_keys(res, KEYS, Path(path), "an 'lm eval --out' result with test blocks "
                     "(re-run 'leapformer lm eval ... --out')")
        out.append((label, res))
    if not out:
        raise ValueError("no evaluation results given")
    return out


def comparable(a: dict, b: dict) -> bool:
    """Scored on the same blocks: same split, window, stride and tokens per block."""
    return all(a[k] == b[k] for k in ("split", "window", "stride", "block_tokens"))


def _ppl(res: dict) -> Interval:
    return block_bootstrap(res["block_nll"], res["block_tokens"])


def _ratio(a: dict, b: dict) -> Interval:
    return block_bootstrap(a["block_nll"], a["block_tokens"],
                           other=(b["block_nll"], b["block_tokens"]))


def _fmt(iv: Interval, digits: int = 2) -> str:
    return f"{iv.mean:.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def render_linearize_report(evals: list[tuple[str, dict]], *, reference: str | None = None,
                            command: str = "", notes: list[str] | None = None) -> str:
    """Markdown: a table (label, split, window / stride, tokens, perplexity with its
    interval, ratio to ``reference`` with its paired interval) and every comparable
    pair's ratio and verdict (see the module docstring)."""
    by = dict(evals)
    if reference is not None and reference not in by:
        raise ValueError(f"reference must be one of the labels ({', '.join(by)}), got "
                         f"{reference!r}")
    lines = ["# Linearisation: perplexity of the teacher and its conversions", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [*(f"- {n}" for n in notes or []),
              ("- ppl: test perplexity per token with a 95% bootstrap interval over blocks "
               "of the test stream; ratio: ppl / the reference's ppl, paired (the same "
               "resampled blocks for both; > 1 = worse than the reference). One model per "
               "row: the intervals cover test-set noise, not training seeds."), "",
              "| model | split | window / stride | tokens | ppl [95%] | "
              + (f"ratio to {reference} [95%] |" if reference else "|"),
              "|---|---|---|---:|---:|" + ("---:|" if reference else "")]
    for label, res in evals:
        row = (f"| {label} | {res['split']} | {res['window']} / {res['stride']} "
               f"| {sum(res['block_tokens'])} | {_fmt(_ppl(res))} |")
        if reference:
            ref = by[reference]
            row += (" 1 |" if label == reference else
                    f" {_fmt(_ratio(res, ref), 3)} |" if comparable(res, ref) else
                    " not comparable |")
        lines.append(row)
    lines += ["", "Paired comparisons (perplexity ratio, lower = better; separated = the "
              "interval excludes 1):", ""]
    for (la, a), (lb, b) in itertools.combinations(evals, 2):
        if not comparable(a, b):
            lines.append(f"- {la} vs {lb}: not comparable (different split, window, stride "
                         "or blocks)")
            continue
        r = _ratio(a, b)
        if r.low > 1.0 or r.high < 1.0:
            verdict = f"separated, {lb if r.mean > 1 else la} better"
        else:
            verdict = "not separated"
        lines.append(f"- {la} / {lb}: {_fmt(r, 3)}: {verdict}")
    return "\n".join(lines) + "\n"
