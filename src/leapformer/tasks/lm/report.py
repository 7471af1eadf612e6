"""Collect ``lm train`` results (and ``lm eval`` / ``lm bench`` JSON) into a markdown report.

Inputs: the ``results.json`` of ``leapformer lm train --out DIR`` runs (searched
recursively under the given folders), optional extra evaluations written by
``leapformer lm eval --out FILE.json`` (e.g. cosFormer with
``--cosformer-length train`` / ``stepping``), and an optional speed result of
``leapformer lm bench`` / ``benchmarks/lm_speed.py``. :func:`render_lm_report`
writes the run table, the extra evaluations, the speed tables and the
perplexity (and speed) targets.
"""

from __future__ import annotations

import logging
from pathlib import Path

from leapformer.report.tables import fmt, fmt_len, target, targets_table
from leapformer.tasks._runs import read_json_object, require_keys

logger = logging.getLogger(__name__)

RUN_KEYS = ("attention", "test_ppl")
EVAL_KEYS = ("attention", "split", "cosformer_length", "ppl")
INFERENCE_LENGTHS = ("train", "stepping")  # cosFormer's L when the length is unknown


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
    """The JSON of ``leapformer lm bench`` / ``benchmarks/lm_speed.py``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"speed file {path} does not exist")
    res = read_json_object(path)
    require_keys(res, ("rows",), path, "an lm-speed result")
    return res


def _order(mech: str) -> tuple:
    return (mech != "softmax", mech)


def _by_mechanism(results: list[dict]) -> dict[str, dict]:
    """One run per mechanism (the last one, in path order, when several)."""
    by: dict[str, dict] = {}
    for r in sorted(results, key=lambda r: r.get("_path", "")):
        if r["attention"] in by:
            logger.warning("lm report: several runs of %s; the targets use %s", r["attention"],
                           r.get("_path", "?"))
        by[r["attention"]] = r
    return by


def cosformer_inference(results: list[dict], evals: list[dict] | None) -> tuple[float | None, str]:
    """cosFormer's test perplexity at inference and how it was obtained.

    The lower of its extra test evaluations with ``cosformer_length`` ``train``
    and ``stepping``; without any, its run's ``test_ppl`` (``"window L"``).
    """
    cands = [e for e in evals or [] if e["attention"] == "cosformer" and e["split"] == "test"
             and e["cosformer_length"] in INFERENCE_LENGTHS and e["ppl"] is not None]
    if cands:
        best = min(cands, key=lambda e: e["ppl"])
        return best["ppl"], f"L={best['cosformer_length']}"
    run = _by_mechanism(results).get("cosformer")
    if run is None or run.get("test_ppl") is None:
        return None, ""
    return run["test_ppl"], "window L"


def evaluate_lm_targets(results: list[dict], evals: list[dict] | None = None) -> list[dict]:
    """The issue's perplexity targets (test split, per token): LeaP within 5% of
    softmax, better than ReLU linear, better than cosFormer at inference (see
    :func:`cosformer_inference`). Missing runs make a target n/a."""
    by = _by_mechanism(results)

    def ppl(m):
        return by[m].get("test_ppl") if m in by else None

    leap, soft, lin = ppl("leap"), ppl("softmax"), ppl("linear")
    cos, how = cosformer_inference(results, evals)

    def ratio(other):
        return None if leap is None or other is None else leap / other

    def detail(name, other):
        return "" if leap is None or other is None else f"LeaP {leap:.2f} vs {name} {other:.2f}"

    return [
        target("LeaP test ppl / softmax's", "<= 1.05 (within 5%)", ratio(soft),
               lambda v: v <= 1.05, "{:.3f}", detail("softmax", soft)),
        target("LeaP test ppl / ReLU linear's", "< 1 (better)", ratio(lin),
               lambda v: v < 1.0, "{:.3f}", detail("linear", lin)),
        target("LeaP test ppl / cosFormer's at inference", "< 1 (better)", ratio(cos),
               lambda v: v < 1.0, "{:.3f}",
               f"{detail('cosFormer', cos)}, {how}" if ratio(cos) is not None else ""),
    ]


def _values(results: list[dict], key: str) -> str:
    vals = sorted({str(r.get(key, "?")) for r in results})
    return ", ".join(vals)


def render_runs_table(results: list[dict]) -> list[str]:
    """Markdown lines: one row per run, softmax first."""
    lines = [("| mechanism | valid ppl | test ppl | test ppl per word | train tokens/s "
              "| peak RSS MB | parameters |"), "|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (_order(r["attention"]), r.get("_path", ""))):
        tps = r.get("train_tokens_per_s")
        lines.append(f"| {r['attention']} | {fmt(r.get('valid_ppl'))} | {fmt(r.get('test_ppl'))} "
                     f"| {fmt(r.get('test_ppl_per_word'))} "
                     f"| {'-' if tps is None else f'{tps:.0f}'} | {fmt(r.get('peak_rss_mb'))} "
                     f"| {r.get('parameters', '-')} |")
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
    rows = speed["rows"]
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
                     speed: dict | None = None, command: str = "") -> str:
    """The markdown report: what was run, the run table, the extra evaluations,
    the speed tables (when given) and the targets."""
    evals = evals or []
    windows = sorted({f"{r.get('eval_window', '?')} / {r.get('eval_stride', '?')}"
                      for r in results})
    lines = ["# Language model results", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [(f"- corpus: {_values(results, 'corpus')}; preset: {_values(results, 'preset')}; "
               f"steps: {_values(results, 'steps')}"),
              (f"- evaluation window / stride: {', '.join(windows)} (tokens read / scored "
               "per window; perplexity of the best checkpoint)"), "",
              "## Runs", "", *render_runs_table(results), ""]
    if evals:
        lines += ["## Extra evaluations", "",
                  ("`leapformer lm eval` results (cosFormer's length mode: `window` = each "
                   "window's own length, `train` = the training context, `stepping` = L = i)."),
                  "", *render_evals_table(evals), ""]
    targets = evaluate_lm_targets(results, evals)
    if speed is not None:
        from leapformer.bench.lm_speed import evaluate_targets

        source = speed.get("command") or "leapformer lm bench"
        device = speed.get("machine", {}).get("device", "")
        lines += ["## Speed", "", f"From `{source}`" + (f"; {device}." if device else "."), "",
                  *render_speed_tables(speed)]
        targets += evaluate_targets(speed)
    lines += [*targets_table(targets), ""]
    return "\n".join(lines)
