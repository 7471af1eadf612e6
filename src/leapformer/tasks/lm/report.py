"""Collect ``lm train`` results (and ``lm eval`` / ``lm bench`` JSON) into a markdown report.

Inputs: the ``results.json`` of ``leapformer lm train --out DIR`` runs (searched
recursively under the given folders), optional extra evaluations written by
``leapformer lm eval --out FILE.json`` (e.g. cosFormer with
``--cosformer-length train`` / ``stepping``), and an optional speed result of
``leapformer lm bench`` / ``benchmarks/lm_speed.py``. :func:`render_lm_report`
writes the run table (runs that differ only in ``seed`` are grouped: mean test
perplexity ± a 95% t interval over the seeds, and a verdict that ranks
mechanisms only where the intervals do not overlap; a single run gets a
bootstrap interval over blocks of its test stream when its ``results.json``
records them, ``test_blocks``, else none), the extra evaluations and the speed
tables.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from leapformer.bench.names import canonical_result
from leapformer.report.intervals import Interval, block_bootstrap, ranked_verdict, seed_interval
from leapformer.report.names import mechanism_label
from leapformer.report.paired import paired_lines
from leapformer.report.tables import fmt, fmt_len
from leapformer._io import read_json_object, require_keys
from leapformer.tasks._runs import flatten

logger = logging.getLogger(__name__)

RUN_KEYS = ("attention", "test_ppl")
EVAL_KEYS = ("attention", "split", "cosformer_length", "ppl")
INFERENCE_LENGTHS = ("train", "stepping")  # cosFormer's L when the length is unknown
# results.json keys that define a configuration when a result has no "config"
SETTING_KEYS = ("attention", "preset", "corpus", "steps", "eval_window", "eval_stride")


def collect_lm_results(run_dirs: list[str | Path]) -> list[dict]:
    """Every ``results.json`` under the given folders (recursive; a file is taken as is).

    Each result gets ``_path``. Raises FileNotFoundError for a missing folder and
    ValueError when nothing is found or a file cannot be read (naming it).
    """
    found = []
    for root in map(Path, run_dirs):
        if not root.exists():
            raise FileNotFoundError(f"run folder {root} does not exist")
        paths = [root] if root.is_file() else sorted(root.rglob("results.json"))
        for path in paths:
            res = read_json_object(path)
            require_keys(res, RUN_KEYS, path, "an 'lm train' results.json")
            res["_path"] = str(path)
            found.append(res)
    if not found:
        raise ValueError(f"no results.json under {', '.join(str(r) for r in run_dirs)}")
    logger.info("lm report: %d runs", len(found))
    return found


def load_evals(paths: list[str | Path]) -> list[dict]:
    """The JSON results of ``leapformer lm eval --out FILE.json`` (each gets ``_path``)."""
    evals = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"evaluation file {path} does not exist")
        res = read_json_object(path)
        require_keys(res, EVAL_KEYS, path, "an 'lm eval' result")
        res["_path"] = str(path)
        evals.append(res)
    return evals


def load_speed(path: str | Path) -> dict:
    """The JSON of ``leapformer lm bench`` / ``benchmarks/lm_speed.py`` (old benchmark
    mechanism names mapped to the registry's: :func:`leapformer.bench.names.canonical_result`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"speed file {path} does not exist")
    res = read_json_object(path)
    require_keys(res, ("rows",), path, "an lm-speed result")
    return canonical_result(res)


def _order(mech: str) -> tuple:
    return (mech != "softmax", mech)


def _settings(r: dict) -> dict:
    """What makes runs seeds of one configuration: the saved run config without its seed
    (or, for results without one, the mechanism, preset, corpus, steps and windows)."""
    if isinstance(r.get("config"), dict):
        return {k: v for k, v in flatten(r["config"]).items() if k != "seed"}
    return {k: r.get(k) for k in SETTING_KEYS}


def _options(r: dict) -> dict:
    """The attention options a run chose (its saved ``model.mechanism_options``), less
    those its preset sets for the mechanism anyway (``train.mechanism_options``)."""
    config = r.get("config") if isinstance(r.get("config"), dict) else {}
    model, train = config.get("model"), config.get("train")
    options = model.get("mechanism_options") if isinstance(model, dict) else None
    if not isinstance(options, dict):
        return {}
    preset = train.get("mechanism_options") if isinstance(train, dict) else None
    preset = preset.get(r.get("attention"), {}) if isinstance(preset, dict) else {}
    preset = preset if isinstance(preset, dict) else {}
    return {k: v for k, v in options.items() if k not in preset or preset[k] != v}


def group_runs(results: list[dict]) -> dict[str, list[dict]]:
    """``{label: runs}``: runs equal in everything but ``seed`` (one per seed, the last by
    path when two share a seed), labelled by mechanism with its options
    (:func:`~leapformer.report.names.mechanism_label`: ``leap+head_norm=rms``), plus
    ``" [key=value]"`` when one such name has several other settings. Softmax first."""
    groups: dict[tuple[str, str], dict] = {}
    for r in sorted(results, key=lambda r: r.get("_path", "")):
        s = _settings(r)
        name = mechanism_label(r["attention"], _options(r))
        g = groups.setdefault((name, json.dumps(s, sort_keys=True, default=str)),
                              {"settings": s, "runs": {}})
        if r.get("seed") in g["runs"]:
            logger.warning("lm report: two runs of %s with seed %s; using %s", name,
                           r.get("seed"), r.get("_path", "?"))
        g["runs"][r.get("seed")] = r
    out = {}
    for (mech, key), g in groups.items():
        others = [o["settings"] for (m, k), o in groups.items() if m == mech and k != key]
        label = mech
        if others:
            diff = sorted({k for o in others for k in set(o) | set(g["settings"])
                           if o.get(k) != g["settings"].get(k)})
            label += " [" + ", ".join(f"{k}={g['settings'].get(k)}" for k in diff[:3]) + \
                (", ...]" if len(diff) > 3 else "]")
        out[label] = [g["runs"][s] for s in sorted(g["runs"], key=str)]
    return dict(sorted(out.items(), key=lambda kv: _order(kv[0])))


def ppl_interval(runs: list[dict], key: str = "test_ppl") -> Interval | None:
    """Mean ± t·SE over the seeds; a single run: a bootstrap over the blocks of its test
    stream (``test_blocks``, test perplexity only), else no interval."""
    vals = [r[key] for r in runs if r.get(key) is not None]
    blocks = runs[0].get("test_blocks") if len(runs) == 1 and key == "test_ppl" else None
    if len(vals) == 1 and isinstance(blocks, dict) and blocks.get("nll"):
        return block_bootstrap(blocks["nll"], blocks["tokens"])
    return seed_interval(vals) if vals else None


def cosformer_inference(results: list[dict], evals: list[dict] | None) -> tuple[float | None, str]:
    """cosFormer's test perplexity at inference and how it was obtained.

    The lower of its extra test evaluations with ``cosformer_length`` ``train``
    and ``stepping``; without any, its runs' mean ``test_ppl`` (``"window L"``).
    """
    cands = [e for e in evals or [] if e["attention"] == "cosformer" and e["split"] == "test"
             and e["cosformer_length"] in INFERENCE_LENGTHS and e["ppl"] is not None]
    if cands:
        best = min(cands, key=lambda e: e["ppl"])
        return best["ppl"], f"L={best['cosformer_length']}"
    runs = group_runs(results).get("cosformer")
    iv = ppl_interval(runs) if runs else None
    return (None, "") if iv is None else (iv.mean, "window L")


def _values(results: list[dict], key: str) -> str:
    vals = sorted({str(r.get(key, "?")) for r in results})
    return ", ".join(vals)


def _mean(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def paired_section(groups: dict[str, list[dict]], focus: str) -> list[str]:
    """Markdown lines: ``focus`` minus every other configuration in test perplexity over
    the seeds both ran (:mod:`leapformer.report.paired`; lower is better)."""
    values = {label: {r.get("seed"): float(r["test_ppl"]) for r in runs
                      if r.get("test_ppl") is not None} for label, runs in groups.items()}
    pairs = paired_lines(values, focus, scale=1.0, digits=2, unit="ppl",
                         higher_is_better=False)
    if not pairs:
        return []
    return [(f"Paired by seed ({focus} minus each mechanism, test perplexity; runs with the "
             "same seed see the same batches; separated = the 95% t interval of the "
             "differences excludes 0):"), "", *pairs, ""]


def render_runs_table(results: list[dict], paired: str | None = None) -> list[str]:
    """Markdown lines: one row per mechanism configuration (means over its seeds; test
    perplexity with its 95% interval), softmax first, then the verdict (and, with
    ``paired``, that configuration against each other one seed by seed)."""
    lines = [("| mechanism | seeds | valid ppl | test ppl | test ppl per word | train tokens/s "
              "| peak RSS MB | parameters |"), "|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups = group_runs(results)
    if paired is not None and paired not in groups:
        raise ValueError(f"--paired must name a mechanism of the runs ({', '.join(groups)}), "
                         f"got {paired!r}")
    named = {}
    for label, runs in groups.items():
        iv = ppl_interval(runs)
        if iv is not None:
            named[label] = iv
        test = "-" if iv is None else (iv.format(2, 1.0) if iv.has_interval else fmt(iv.mean))
        tps = _mean(runs, "train_tokens_per_s")
        lines.append(f"| {label} | {len(runs)} | {fmt(_mean(runs, 'valid_ppl'))} | {test} "
                     f"| {fmt(_mean(runs, 'test_ppl_per_word'))} "
                     f"| {'-' if tps is None else f'{tps:.0f}'} "
                     f"| {fmt(_mean(runs, 'peak_rss_mb'))} "
                     f"| {runs[0].get('parameters', '-')} |")
    lines.append("")
    if len(named) > 1:
        lines.append(f"Verdict (lower is better; ranked only where the 95% intervals do not "
                     f"overlap): {ranked_verdict(named, False, 'test ppl')}")
        lines.append("")
    if paired is not None:
        lines += paired_section(groups, paired)
    note = "± = 95% interval (t over seeds)"
    singles = [runs[0] for runs in groups.values() if len(runs) == 1]
    if any(r.get("test_blocks") for r in singles):
        note += ("; a single run: a bootstrap over blocks of its test stream (test-set "
                 "noise only, not seed-to-seed variation)")
    if any(not r.get("test_blocks") for r in singles):
        note += ("; single run without test blocks (written before they were recorded), "
                 "no interval: run two or more seeds")
    lines.append(note + ".")
    return lines


def render_evals_table(evals: list[dict]) -> list[str]:
    """Markdown lines: one row per extra evaluation."""
    lines = ["| mechanism | split | cosformer length | window / stride | ppl |",
             "|---|---|---|---:|---:|"]
    for e in sorted(evals, key=lambda e: (_order(e["attention"]), e["split"],
                                          e["cosformer_length"], e["_path"])):
        lines.append(f"| {e['attention']} | {e['split']} | {e['cosformer_length']} "
                     f"| {e.get('window', '-')} / {e.get('stride', '-')} | {fmt(e['ppl'])} |")
    return lines


def render_speed_tables(speed: dict) -> list[str]:
    """Markdown lines: the training and generation tables of an lm-speed result."""
    rows = canonical_result(speed)["rows"]
    lines = []
    train = [r for r in rows if r["mode"] == "train"]
    if train:
        lines += ["### Training", "", "| context | mechanism | tokens/s | vs softmax | peak MB |",
                  "|---:|---|---:|---:|---:|"]
        for r in train:
            if r.get("error"):
                lines.append(f"| {fmt_len(r['context'])} | {r['mechanism']} | failed: "
                             f"{r['error']} | | |")
                continue
            lines.append(f"| {fmt_len(r['context'])} | {r['mechanism']} "
                         f"| {r['tokens_per_s']:.0f} | {fmt(r.get('vs_softmax'))} "
                         f"| {fmt(r.get('peak_mb'))} |")
        lines.append("")
    gen = [r for r in rows if r["mode"] == "generate"]
    if gen:
        lines += ["### Generation (batch 1)", "",
                  "| position | mechanism | ms / token | vs softmax |", "|---:|---|---:|---:|"]
        for r in gen:
            if r.get("error"):
                lines.append(f"| {fmt_len(r['position'])} | {r['mechanism']} | failed: "
                             f"{r['error']} | |")
                continue
            lines.append(f"| {fmt_len(r['position'])} | {r['mechanism']} | {fmt(r['ms'])} "
                         f"| {fmt(r.get('vs_softmax'))} |")
        lines.append("")
    return lines


def render_lm_report(results: list[dict], evals: list[dict] | None = None,
                     speed: dict | None = None, command: str = "",
                     paired: str | None = None, notes: list[str] | None = None) -> str:
    """The markdown report: what was run (``notes``: extra bullet lines for its header),
    the run table, the extra evaluations, and the speed tables (when given)."""
    evals = evals or []
    windows = sorted({f"{r.get('eval_window', '?')} / {r.get('eval_stride', '?')}"
                      for r in results})
    lines = ["# Language model results", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [(f"- corpus: {_values(results, 'corpus')}; preset: {_values(results, 'preset')}; "
               f"steps: {_values(results, 'steps')}"),
              (f"- evaluation window / stride: {', '.join(windows)} (tokens read / scored "
               "per window; perplexity of the best checkpoint)"),
              *(f"- {n}" for n in notes or []), "",
              "## Runs", "", *render_runs_table(results, paired), ""]
    if evals:
        lines += ["## Extra evaluations", "",
                  ("`leapformer lm eval` results (cosFormer's length mode: `window` = each "
                   "window's own length, `train` = the training context, `stepping` = L = i)."),
                  "", *render_evals_table(evals), ""]
        cos, how = cosformer_inference(results, evals)
        if cos is not None and how != "window L":
            lines += [f"cosFormer at inference (length unknown; the better of L=train and "
                      f"L=stepping): test ppl {fmt(cos)} ({how}).", ""]
    if speed is not None:
        source = speed.get("command") or "leapformer lm bench"
        device = speed.get("machine", {}).get("device", "")
        lines += ["## Speed", "", f"From `{source}`" + (f"; {device}." if device else "."), "",
                  *render_speed_tables(speed)]
    return "\n".join(lines)
