"""The report of speech runs (``leapformer st report``): every offline evaluation of
``st eval`` under the given folders with its training run, and paired comparisons.

One row per evaluation (``eval-*/results.json`` holding ``utterances``): the run, task,
spec, steps and training minutes of its run, split, beam, and the quality: ASR word
error rate (normalised, with a 95% bootstrap interval over utterances) or ST BLEU.
With ``paired=RUN`` (a run folder's name), the WER of that run minus every other ASR
run evaluated on the same utterances, under the same bootstrap resamples of the
utterances (:func:`~leapformer.report.intervals.ratio_bootstrap`): "separated" when
the interval excludes 0.
"""

from __future__ import annotations

from pathlib import Path

from leapformer._io import read_json_object
from leapformer.report.intervals import ratio_bootstrap

__all__ = ["collect_st_evals", "render_st_report"]


def collect_st_evals(run_dirs: list[str | Path]) -> list[dict]:
    """Every ``st eval`` result under the folders (searched recursively), each with
    ``_path``, ``_name`` (its run folder's name) and ``_train`` (the run's
    ``results.json``, or {} when it is not there)."""
    found = []
    for root in map(Path, run_dirs):
        if not root.exists():
            raise FileNotFoundError(f"runs folder {root} does not exist")
        for path in sorted(root.rglob("results.json")):
            data = read_json_object(path)
            if data.get("task") not in ("asr", "st") or "utterances" not in data:
                continue  # a training result, or another task's
            run = path.parent.parent
            train_path = run / "results.json"
            train = read_json_object(train_path) if train_path.is_file() else {}
            found.append({**data, "_path": str(path), "_name": run.name, "_train": train})
    return found


def _quality(e: dict) -> str:
    if e["task"] == "asr":
        iv = e.get("WER_normalised_interval")
        ci = f" ({iv[0]:.1f}-{iv[1]:.1f})" if iv else ""
        return f"WER {e['WER_normalised']:.1f}{ci}"
    return f"BLEU {e['BLEU']:.2f}"


def _paired_lines(evals: list[dict], focus: str) -> list[str]:
    mine = [e for e in evals if e["_name"] == focus and e["task"] == "asr"]
    if not mine:
        raise ValueError(f"paired must name an ASR run of the evaluations, got {focus!r}; "
                         f"runs: {sorted({e['_name'] for e in evals})}")
    lines = []
    for a in mine:
        for b in evals:
            if b is a or b["task"] != "asr" or b["split"] != a["split"] or \
                    b.get("ref_words_per_utterance") != a.get("ref_words_per_utterance") or \
                    "word_errors_per_utterance" not in a or "word_errors_per_utterance" not in b:
                continue  # not the same utterances, or written before the counts existed
            d = ratio_bootstrap(a["word_errors_per_utterance"], a["ref_words_per_utterance"],
                                other_num=b["word_errors_per_utterance"])
            sep = d.low > 0 or d.high < 0
            verdict = ("separated, " + (f"{b['_name']} better" if d.mean > 0 else
                                        f"{a['_name']} better")) if sep else \
                "not separated (the interval contains 0)"
            lines.append(f"- {a['_name']} - {b['_name']} ({a['split']}, {a['utterances']} "
                         f"utterances): {100 * d.mean:+.1f} WER points, 95% interval "
                         f"{100 * d.low:+.1f} to {100 * d.high:+.1f}: {verdict}")
    return lines


def render_st_report(evals: list[dict], *, command: str = "", paired: str | None = None,
                     notes: list[str] | None = None) -> str:
    """The markdown report (module docstring)."""
    if not evals:
        raise ValueError("no st eval results found (eval-*/results.json of 'st eval')")
    lines = ["# Speech recognition and translation results", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- {n}" for n in notes or []]
    lines += ["- WER: jiwer, lower-cased without punctuation; (a-b) = 95% bootstrap interval "
              "over the utterances (test-set noise only, one seed); BLEU: sacreBLEU", "",
              "| run | task | spec | steps | train min | split | utterances | beam | quality "
              "| decode s |", "|---|---|---|---:|---:|---|---:|---:|---|---:|"]
    for e in sorted(evals, key=lambda e: (e["task"], e["_name"], e["split"])):
        t = e["_train"]
        minutes = f"{t['train_wall_s'] / 60:.0f}" if t.get("train_wall_s") else "-"
        lines.append(f"| {e['_name']} | {e['task']} | `{e['spec']}` | {t.get('steps', '-')} | "
                     f"{minutes} | {e['split']} | {e['utterances']} | {e['beam']} | "
                     f"{_quality(e)} | {e.get('wall_s', float('nan')):.0f} |")
    if paired is not None:
        pairs = _paired_lines(evals, paired)
        lines += ["", f"Paired ({paired} minus each ASR run on the same utterances, word "
                  "error rate; the same bootstrap resamples for both):", ""]
        lines += pairs or ["- no other ASR run was evaluated on the same utterances"]
    return "\n".join(lines) + "\n"
