"""Collect ``translate train|eval|simul`` results into a markdown report (docs/math.md §5.3-§5.4).

A *run* is a folder of ``leapformer translate train --out DIR`` (``config.json``,
``results.json``, ``metrics.jsonl``); its offline evaluations are the
``eval-*/results.json`` and its simultaneous ones the ``simul-*/results.json``
inside it (the default output folders of ``translate eval`` / ``translate
simul``). :func:`collect_translate_runs` finds runs under the given folders;
:func:`render_translate_report` writes:

- the training table (spec, wait-k, steps, wall time, tokens/s, best
  validation loss, parameters);
- the **per-block ablation**: every run whose spec mixes mechanisms, against
  the homogeneous LeaP run, by validation loss at the last evaluation step
  all of them reached (equal steps: runs of one seed and schedule see the same
  batches, so a shorter run is the prefix of a longer one); the best mix is
  the lowest;
- the simultaneous table (spec x test-time k: BLEU, AL, LAAL, AP, DAL,
  computation-aware AL, decoder tokens/s);
- the offline table (beam search, BLEU, and for cosFormer decoders the
  target-length predictor with its mean absolute error);
- the issue's targets: LeaP within 1 BLEU of softmax at every k and with a
  lower computation-aware AL; the best mix's BLEU at least homogeneous LeaP's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from leapformer.report.tables import fmt, target, targets_table
from leapformer.nn import AttentionSpec
from leapformer.tasks._runs import read_json_object, require_keys

logger = logging.getLogger(__name__)

RUN_FORMAT = "leapformer-translate-run"
LEAP = "enc=leap,dec=leap,cross=leap"
SOFTMAX = "enc=softmax,dec=softmax,cross=softmax"

__all__ = ["collect_translate_runs", "evaluate_translate_targets", "per_block_ablation",
           "render_translate_report"]


def _valid_losses(path: Path) -> dict[int, float]:
    """``step -> validation loss`` from a run's ``metrics.jsonl`` (empty if none)."""
    out: dict[int, float] = {}
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {n} is not JSON: {err}") from err
        if rec.get("kind") == "eval" and "loss" in rec:
            out[int(rec["step"])] = float(rec["loss"])
    return out


def _read_run(folder: Path) -> dict:
    config = read_json_object(folder / "config.json")
    if config.get("format") != RUN_FORMAT:
        raise ValueError(f"{folder / 'config.json'} is not a 'translate train' run config")
    results = read_json_object(folder / "results.json")
    require_keys(results, ("steps",), folder / "results.json", "a 'translate train' results.json")
    spec = str(AttentionSpec.parse(config["spec"]))
    evals, simuls = [], []
    for path in sorted(folder.glob("eval-*/results.json")):
        res = read_json_object(path)
        require_keys(res, ("BLEU", "split", "beam"), path, "a 'translate eval' result")
        evals.append({**res, "_path": str(path)})
    for path in sorted(folder.glob("simul-*/results.json")):
        res = read_json_object(path)
        require_keys(res, ("BLEU", "k", "AL", "LAAL", "AL_CA", "split"), path,
                 "a 'translate simul' result")
        simuls.append({**res, "_path": str(path)})
    return {"name": folder.name, "path": str(folder), "spec": spec, "config": config,
            "results": results, "valid": _valid_losses(folder / "metrics.jsonl"),
            "evals": evals, "simuls": simuls}


def collect_translate_runs(folders: list[str | Path]) -> list[dict]:
    """Every run folder (one with ``config.json`` and ``results.json``) at or under the
    given folders, sorted by path. Raises FileNotFoundError for a missing folder and
    ValueError when no run is found or a file cannot be read (naming it)."""
    runs = []
    for root in map(Path, folders):
        if not root.is_dir():
            raise FileNotFoundError(f"run folder {root} does not exist")
        for cfg in sorted([root / "config.json"] if (root / "config.json").is_file()
                          else root.rglob("config.json")):
            if (cfg.parent / "results.json").is_file():
                runs.append(_read_run(cfg.parent))
    if not runs:
        raise ValueError(f"no translation run (config.json + results.json) under "
                         f"{', '.join(str(f) for f in folders)}")
    logger.info("translate report: %d runs", len(runs))
    return runs


def _homogeneous(spec: str) -> str | None:
    s = AttentionSpec.parse(spec)
    return s.enc if not s.layers and s.enc == s.dec == s.cross else None


def _one(runs: list[dict], spec: str, waitk=True) -> dict | None:
    """The run of ``spec`` (wait-k trained when ``waitk``; else offline); the last by path."""
    found = [r for r in runs if r["spec"] == spec and (r["config"]["waitk"] is not None) == waitk]
    if len(found) > 1:
        logger.warning("translate report: several runs of %s; using %s", spec, found[-1]["path"])
    return found[-1] if found else None


def per_block_ablation(runs: list[dict]) -> tuple[list[dict], dict | None]:
    """Rows ``{name, spec, step, valid_loss, leap_valid_loss, delta}`` of every wait-k
    run whose spec mixes mechanisms, compared with the homogeneous LeaP wait-k run at
    one step: the last validation step that LeaP and every mix reached (so a mix
    trained on afterwards is still ranked where the others stopped); and the best
    row (lowest difference) or None."""
    leap = _one(runs, LEAP)
    mixes = [r for r in runs
             if r["config"]["waitk"] is not None and _homogeneous(r["spec"]) is None]
    common = set(leap["valid"]) if leap else set()
    for r in mixes:
        common &= set(r["valid"])
    step = max(common) if common else None
    rows = []
    for r in mixes:
        loss = r["valid"].get(step) if step is not None else None
        ref = leap["valid"].get(step) if step is not None else None
        rows.append({"name": r["name"], "spec": r["spec"], "step": step, "valid_loss": loss,
                     "leap_valid_loss": ref,
                     "delta": None if loss is None or ref is None else loss - ref})
    ranked = [row for row in rows if row["valid_loss"] is not None]
    best = min(ranked, key=lambda row: row["delta"]) if ranked else None
    return rows, best


def _simul(run: dict | None, k: int) -> dict | None:
    if run is None:
        return None
    found = [s for s in run["simuls"] if s["k"] == k and s.get("encoder", "incremental")
             == "incremental"]
    return found[-1] if found else None


def evaluate_translate_targets(runs: list[dict]) -> list[dict]:
    """The issue's targets, one row per test-time k found in the simultaneous results:
    LeaP BLEU >= softmax BLEU - 1, LeaP computation-aware AL < softmax's, and the
    best per-block mix's BLEU >= homogeneous LeaP's. Missing results make a row n/a."""
    leap, soft = _one(runs, LEAP), _one(runs, SOFTMAX)
    _, best = per_block_ablation(runs)
    mix = next((r for r in runs if best and r["name"] == best["name"]), None)
    ks = sorted({s["k"] for r in runs for s in r["simuls"]}) or [None]
    rows = []
    for k in ks:
        sl, ss = _simul(leap, k), _simul(soft, k)
        sm = _simul(mix, k)
        gap = None if sl is None or ss is None else sl["BLEU"] - ss["BLEU"]
        ca = None if sl is None or ss is None else sl["AL_CA"] - ss["AL_CA"]
        mg = None if sl is None or sm is None else sm["BLEU"] - sl["BLEU"]
        rows += [
            target(f"wait-{k}: LeaP BLEU - softmax BLEU", ">= -1", gap, lambda v: v >= -1.0,
                   "{:+.2f}", "" if gap is None else f"{sl['BLEU']:.2f} vs {ss['BLEU']:.2f}"),
            target(f"wait-{k}: LeaP AL_CA - softmax AL_CA", "< 0 (lower)", ca,
                   lambda v: v < 0, "{:+.3f}",
                   "" if ca is None else f"{sl['AL_CA']:.3f} vs {ss['AL_CA']:.3f}"),
            target(f"wait-{k}: best mix BLEU - LeaP BLEU", ">= 0", mg, lambda v: v >= 0,
                   "{:+.2f}", "" if mg is None else f"{mix['spec']}"),
        ]
    return rows


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def render_training_table(runs: list[dict]) -> list[str]:
    lines = [("| run | spec | wait-k | causal enc | steps | train min | target tokens/s "
             "| best valid loss (step) | parameters |"),
             "|---|---|---|---|---:|---:|---:|---|---:|"]
    for r in runs:
        c, res = r["config"], r["results"]
        tps = res.get("train_tokens_per_s")
        best = res.get("best_valid_loss")
        lines.append(f"| {r['name']} | `{r['spec']}` | {c['waitk'] or 'offline'} "
                     f"| {'yes' if c['causal_encoder'] else 'no'} | {res['steps']} "
                     f"| {_minutes(res.get('train_wall_s'))} "
                     f"| {'-' if tps is None else f'{tps:.0f}'} "
                     f"| {fmt(best)} ({res.get('best_step', '-')}) | {res.get('parameters', '-')} |")
    return lines


def render_ablation_table(rows: list[dict], best: dict | None) -> list[str]:
    lines = ["| run | spec | step | valid loss | all-LeaP valid loss | difference |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        mark = " (best)" if best is not None and row is best else ""
        delta = "-" if row["delta"] is None else f"{row['delta']:+.3f}"
        lines.append(f"| {row['name']}{mark} | `{row['spec']}` | {row['step'] or '-'} "
                     f"| {fmt(row['valid_loss'])} | {fmt(row['leap_valid_loss'])} | {delta} |")
    return lines


def render_simul_table(runs: list[dict]) -> list[str]:
    lines = [("| run | spec | k | sentences | BLEU | AL | LAAL | AP | DAL | AL_CA (ms) "
             "| decoder tokens/s |"), "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [(r, s) for r in runs for s in r["simuls"]]
    for r, s in sorted(rows, key=lambda rs: (rs[1]["k"], rs[0]["name"], rs[1]["_path"])):
        enc = "" if s.get("encoder", "incremental") == "incremental" else f" ({s['encoder']})"
        tps = s.get("decoder_tokens_per_s")
        lines.append(f"| {r['name']}{enc} | `{r['spec']}` | {s['k']} | {s.get('sentences', '-')} "
                     f"| {s['BLEU']:.2f} | {fmt(s['AL'])} | {fmt(s['LAAL'])} "
                     f"| {fmt(s.get('AP'))} | {fmt(s.get('DAL'))} | {fmt(s['AL_CA'])} "
                     f"| {'-' if tps is None else f'{tps:.0f}'} |")
    return lines


def render_offline_table(runs: list[dict]) -> list[str]:
    lines = [("| run | spec | trained | split | sentences | beam | length predictor "
             "| length MAE | BLEU | target tokens/s |"),
             "|---|---|---|---|---:|---:|---|---:|---:|---:|"]
    for r in runs:
        for e in r["evals"]:
            tps = e.get("target_tokens_per_s")
            lines.append(f"| {r['name']} | `{r['spec']}` | {r['config']['waitk'] or 'offline'} "
                         f"| {e['split']} | {e.get('sentences', '-')} | {e['beam']} "
                         f"| {e.get('length_predictor') or '-'} | {fmt(e.get('length_mae'))} "
                         f"| {e['BLEU']:.2f} | {'-' if tps is None else f'{tps:.0f}'} |")
    return lines


def render_translate_report(runs: list[dict], command: str = "", notes: list[str] | None = None
                            ) -> str:
    """The markdown report (module docstring); ``notes``: extra bullet lines for the header."""
    lines = ["# Translation results (en->ja)", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- {n}" for n in notes or []]
    lines += ["", "## Training", "", *render_training_table(runs), ""]
    rows, best = per_block_ablation(runs)
    if rows:
        lines += ["## Per-block ablation", "",
                  ("Each run changes one block kind of the all-LeaP model; validation loss "
                   "(label-smoothed, per target token, at the run's validation wait-k) at the "
                   "last step every mix and the all-LeaP run evaluated. Lower is better."), "",
                  *render_ablation_table(rows, best), ""]
    if any(r["simuls"] for r in runs):
        lines += ["## Simultaneous (wait-k)", "",
                  ("Latency in source subword tokens (SimulEval definitions, reference "
                   "length); AL_CA is the computation-aware AL in ms with each source token "
                   "arriving after `source_ms_per_token` ms."), "", *render_simul_table(runs), ""]
    if any(r["evals"] for r in runs):
        lines += ["## Offline (full sentence)", "", *render_offline_table(runs), ""]
    lines += [*targets_table(evaluate_translate_targets(runs)), ""]
    return "\n".join(lines)
