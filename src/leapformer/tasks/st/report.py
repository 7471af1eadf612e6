"""The report of speech runs (``leapformer st report``): every evaluation of ``st eval``
(offline) and ``st simul`` (wait-k) under the given folders with its training run, and
paired comparisons.

One row per offline evaluation (``eval-*/results.json``): the run, task, spec, steps and
training minutes of its run, split, beam, and the quality: ASR word error rate
(normalised) or ST BLEU, each with a 95% bootstrap interval over utterances. One row
per simultaneous evaluation (``simul-*/results.json``): wait-k, utterances (joined
``concat`` at a time), seconds of audio per utterance, quality, AL, LAAL and the
computation-aware AL (ms of source audio), decoder ms per token, and the decoder
step (compiled, or eager: ``--no-compile-step`` and results from before session 8).

With ``paired=RUN`` (a run folder's name, or a list of them): that run minus every other
run evaluated the same way on the same utterances (task, kind, split, beam or
k/ratio/encoder/concat, and the same decoder step), under the same bootstrap resamples
of the utterances: the WER
(:func:`~leapformer.report.intervals.ratio_bootstrap`), the BLEU
(:func:`~leapformer.tasks.st.evaluate.bleu_interval`) and, for wait-k, the computation-aware AL
(mean of per-utterance differences). "Separated" when the interval excludes 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leapformer._io import read_json_object
from leapformer.report.intervals import bootstrap_interval, ratio_bootstrap
from leapformer.tasks.st.evaluate import bleu_interval

__all__ = ["collect_st_evals", "render_st_report"]


def collect_st_evals(run_dirs: list[str | Path]) -> list[dict]:
    """Every ``st eval`` / ``st simul`` result under the folders (searched recursively),
    each with ``_path``, ``_name`` (its run folder's name), ``_kind`` (``offline`` or
    ``simul``) and ``_train`` (the run's ``results.json``, or {} when it is not there)."""
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
            kind = "simul" if "k" in data else "offline"
            found.append({**data, "_path": str(path), "_name": run.name, "_kind": kind,
                          "_train": train})
    return found


def _quality(e: dict) -> str:
    if e["task"] == "asr":
        name, value, iv = "WER", e["WER_normalised"], e.get("WER_normalised_interval")
    else:
        name, value, iv = "BLEU", e["BLEU"], e.get("BLEU_interval")
    d = 1 if name == "WER" else 2
    return f"{name} {value:.{d}f}" + (f" ({iv[0]:.{d}f}-{iv[1]:.{d}f})" if iv else "")


def _same_test(a: dict, b: dict) -> bool:
    keys = ("task", "_kind", "split", "utterances", "beam", "k", "ratio", "encoder",
            "segment_ms", "max_len_a", "max_len_b")
    # results from before the compiled speech step decoded eagerly
    return all(a.get(k) == b.get(k) for k in keys) and \
        a.get("concat", 1) == b.get("concat", 1) and \
        a.get("compile_step", False) == b.get("compile_step", False)


def _verdict(low: float, high: float, mean: float, a: str, b: str, lower_better: bool) -> str:
    if low <= 0 <= high:
        return "not separated (the interval contains 0)"
    return f"separated, {a if (mean < 0) == lower_better else b} better"


def _describe(e: dict) -> str:
    if e["_kind"] == "offline":
        return f"{e['split']}, beam {e['beam']}, {e['utterances']} utterances"
    joined = f", joined {e['concat']} at a time" if e.get("concat", 1) > 1 else ""
    return (f"{e['split']}, wait-{e['k']}, ratio {e.get('ratio')}, {e.get('encoder')} encoder, "
            f"{e['utterances']} utterances{joined}")


def _pair(a: dict, b: dict) -> list[str]:
    head = f"- {a['_name']} - {b['_name']} ({_describe(a)}): "
    out = []
    if a["task"] == "asr" and "word_errors_per_utterance" in a and \
            "word_errors_per_utterance" in b and \
            a.get("ref_words_per_utterance") == b.get("ref_words_per_utterance"):
        d = ratio_bootstrap(a["word_errors_per_utterance"], a["ref_words_per_utterance"],
                            other_num=b["word_errors_per_utterance"])
        out.append(head + f"{100 * d.mean:+.1f} WER points, 95% interval {100 * d.low:+.1f} "
                   f"to {100 * d.high:+.1f}: "
                   + _verdict(d.low, d.high, d.mean, a["_name"], b["_name"], True))
    sa, sb = a.get("bleu_stats_per_utterance"), b.get("bleu_stats_per_utterance")
    if a["task"] == "st" and sa and sb:
        if [s[9] for s in sa] != [s[9] for s in sb]:  # reference lengths per utterance
            out.append(head + "not compared: the references differ")
        else:
            d = bleu_interval(sa, sb)
            out.append(head + f"{d.mean:+.2f} BLEU, 95% interval {d.low:+.2f} to {d.high:+.2f}: "
                       + _verdict(d.low, d.high, d.mean, a["_name"], b["_name"], False))
    ca_a, ca_b = a.get("AL_CA_per_utterance"), b.get("AL_CA_per_utterance")
    if ca_a and ca_b and len(ca_a) == len(ca_b):
        both = [(x, y) for x, y in zip(ca_a, ca_b, strict=True)
                if x is not None and y is not None]
        if both:
            d = bootstrap_interval([x - y for x, y in both])
            some = "" if len(both) == len(ca_a) else \
                f" (the {len(both)} utterances with output in both)"
            out.append(head + f"{d.mean:+.0f} ms computation-aware AL{some}, 95% interval "
                       f"{d.low:+.0f} to {d.high:+.0f}: "
                       + _verdict(d.low, d.high, d.mean, a["_name"], b["_name"], True))
    return out


def _paired_lines(evals: list[dict], focus: str) -> list[str]:
    mine = [e for e in evals if e["_name"] == focus]
    if not mine:
        raise ValueError(f"paired must name a run of the evaluations, got {focus!r}; "
                         f"runs: {sorted({e['_name'] for e in evals})}")
    lines, matched = [], 0
    for a in sorted(mine, key=_order):
        for b in sorted(evals, key=_order):
            if b["_name"] != focus and _same_test(a, b):
                matched += 1
                lines += _pair(a, b)
    if matched and not lines:
        lines.append(f"- {matched} evaluation(s) match, but without per-utterance statistics "
                     "(written before they existed): re-run st eval / st simul")
    return lines


def _order(e: dict):
    return (e["task"], e["_kind"], e["split"], e.get("concat", 1), e.get("k", 0), e["_name"])


def _minutes(e: dict) -> str:
    t = e["_train"]
    return f"{t['train_wall_s'] / 60:.0f}" if t.get("train_wall_s") else "-"


def _offline_table(evals: list[dict]) -> list[str]:
    lines = ["| run | task | spec | steps | train min | split | utterances | beam | quality "
             "| decode s |", "|---|---|---|---:|---:|---|---:|---:|---|---:|"]
    for e in sorted(evals, key=_order):
        lines.append(f"| {e['_name']} | {e['task']} | `{e['spec']}` | "
                     f"{e['_train'].get('steps', '-')} | {_minutes(e)} | {e['split']} | "
                     f"{e['utterances']} | {e['beam']} | {_quality(e)} | "
                     f"{e.get('wall_s', float('nan')):.0f} |")
    return lines


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _simul_table(evals: list[dict]) -> list[str]:
    lines = ["| run | spec | trained k | k | ratio | encoder | step | split | utterances | "
             "joined | audio s each | quality | AL ms | LAAL ms | AL_CA ms | decoder ms/token |",
             "|---|---|---:|---:|---:|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for e in sorted(evals, key=_order):
        each = e["audio_s"] / e["utterances"] if e.get("audio_s") else None
        per_tok = e.get("decoder_ms_per_token")
        lines.append(f"| {e['_name']} | `{e['spec']}` | {e.get('waitk_trained') or 'offline'} | "
                     f"{e['k']} | {e.get('ratio', '-')} | {e.get('encoder', '-')} | "
                     f"{'compiled' if e.get('decoder_compiled') else 'eager'} | {e['split']} | "
                     f"{e['utterances']} | {e.get('concat', 1)} | "
                     f"{'-' if each is None else f'{each:.1f}'} | {_quality(e)} | "
                     f"{_ms(e.get('AL'))} | {_ms(e.get('LAAL'))} | {_ms(e.get('AL_CA'))} | "
                     f"{'-' if per_tok is None else f'{per_tok:.1f}'} |")
    return lines


def render_st_report(evals: list[dict], *, command: str = "",
                     paired: str | list[str] | None = None,
                     notes: list[str] | None = None) -> str:
    """The markdown report (module docstring)."""
    if not evals:
        raise ValueError("no st eval or st simul results found (eval-*/ or simul-*/"
                         "results.json)")
    lines = ["# Speech recognition and translation results", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- {n}" for n in notes or []]
    lines += ["- quality: WER by jiwer (lower-cased, no punctuation) or BLEU by sacreBLEU; "
              "(a-b) = 95% bootstrap interval over the utterances (test-set noise only, one "
              "seed)", ""]
    offline = [e for e in evals if e["_kind"] == "offline"]
    simul = [e for e in evals if e["_kind"] == "simul"]
    if offline:
        lines += ["## Offline", ""] + _offline_table(offline) + [""]
    if simul:
        lines += ["## Simultaneous (wait-k on pre-decision chunks)", "",
                  "Latency in ms of source audio (SimulEval's definitions, reference length "
                  "in target subwords); AL_CA adds the measured compute.", ""]
        lines += _simul_table(simul) + [""]
    for focus in [paired] if isinstance(paired, str) else paired or []:
        pairs = _paired_lines(evals, focus)
        lines += ([""] if lines[-1] else []) + [
                  f"## Paired: {focus} minus each run on the same utterances", "",
                  "The same bootstrap resamples of the utterances for both runs.", ""]
        lines += pairs or ["- no other run was evaluated on the same utterances"]
    return "\n".join(lines).rstrip("\n") + "\n"
