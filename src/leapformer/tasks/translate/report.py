"""Collect ``translate train|eval|simul`` results into a markdown report (docs/math.md §5.3-§5.4).

A *run* is a folder of ``leapformer translate train --out DIR`` (``config.json``,
``results.json``, ``metrics.jsonl``); its offline evaluations are the
``eval-*/results.json`` and its simultaneous ones the ``simul-*/results.json``
inside it (the default output folders of ``translate eval`` / ``translate
simul``). :func:`collect_translate_runs` finds runs under the given folders.

Runs whose ``config.json`` differ only in ``seed`` are one configuration
(:func:`group_translate_runs`); every number is its mean over the seeds, and
BLEU and validation loss carry a 95% t interval over the seeds when there are
two or more. A single run has no interval: BLEU is a corpus statistic and the
per-sentence statistics a bootstrap would need are not recorded. Under each
result table a verdict ranks configurations only where their intervals do not
overlap (:func:`leapformer.report.intervals.verdict`) and says "not separated"
otherwise. :func:`render_translate_report` writes:

- the training table (spec, wait-k, seeds, steps, wall time, tokens/s, best
  validation loss, parameters);
- the **per-block ablation**: every configuration whose spec mixes mechanisms,
  against the homogeneous LeaP one, by validation loss at the last evaluation
  step all of their runs reached (equal steps: runs of one seed and schedule
  see the same batches, so a shorter run is the prefix of a longer one); the
  best mix is the lowest;
- the simultaneous table (configuration x test-time k: BLEU, AL, LAAL, AP, DAL,
  computation-aware AL, decoder tokens/s), with a BLEU verdict per k;
- the offline table (beam search, BLEU, and for cosFormer decoders the
  target-length predictor with its mean absolute error), with a BLEU verdict
  per split.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from leapformer.nn import AttentionSpec
from leapformer.report.intervals import Interval, ranked_verdict, seed_interval
from leapformer.report.tables import fmt
from leapformer._io import read_json_object, read_jsonl, require_keys
from leapformer.tasks._runs import flatten

logger = logging.getLogger(__name__)

RUN_FORMAT = "leapformer-translate-run"
LEAP = "enc=leap,dec=leap,cross=leap"
SOFTMAX = "enc=softmax,dec=softmax,cross=softmax"
INTERVAL_NOTE = ("± = 95% interval (t over seeds); without ±: single run, no interval "
                 "(BLEU is a corpus statistic and per-sentence statistics are not recorded, "
                 "so a single run cannot be bootstrapped)")

__all__ = ["collect_translate_runs", "group_translate_runs", "per_block_ablation",
           "render_translate_report"]


def _valid_losses(path: Path) -> dict[int, float]:
    """``step -> validation loss`` from a run's ``metrics.jsonl`` (empty if none)."""
    out: dict[int, float] = {}
    if not path.is_file():
        return out
    for rec in read_jsonl(path):
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
    evals, simuls, stale = [], [], []
    for pattern, keys, what, kept in (
            ("eval-*/results.json", ("BLEU", "split", "beam"), "a 'translate eval' result",
             evals),
            ("simul-*/results.json", ("BLEU", "k", "AL", "LAAL", "AL_CA", "split"),
             "a 'translate simul' result", simuls)):
        for path in sorted(folder.glob(pattern)):
            res = read_json_object(path)
            require_keys(res, keys, path, what)
            if _is_stale(res, results):
                stale.append(str(path))
            else:
                kept.append({**res, "_path": str(path)})
    return {"name": folder.name, "path": str(folder), "spec": spec, "config": config,
            "results": results, "valid": _valid_losses(folder / "metrics.jsonl"),
            "evals": evals, "simuls": simuls, "stale": stale}


def _is_stale(res: dict, results: dict) -> bool:
    """An evaluation of a checkpoint the run has since replaced (it was resumed and trained
    on): its recorded step is before the run's best (or last) step. A later step is an
    evaluation made while a resumed run is still training (``results.json`` is written at
    the end), not a stale one. Evaluations written before the step was recorded are taken
    as they are."""
    step = res.get("checkpoint_step")
    if step is None:
        return False
    want = results.get("best_step") if res.get("checkpoint") != "last" else results.get("steps")
    return want is not None and step < want


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


def _settings(run: dict) -> dict:
    return {k: v for k, v in flatten(run["config"]).items() if k != "seed"}


def _group_name(names: list[str]) -> str:
    """``leap`` for runs ``leap-s0``, ``leap-s1`` (or ``seed0/leap``, ``seed1/leap``): the
    names' common prefix without a trailing seed marker, else the names joined by ``+``."""
    if len(set(names)) == 1:
        return names[0]
    pre = os.path.commonprefix(names)
    if all(n[len(pre):].isdigit() for n in names):
        pre = re.sub(r"([-_.](seed|s)?|seed)$", "", pre)
        if pre:
            return pre
    return "+".join(names)


def group_translate_runs(runs: list[dict]) -> list[dict]:
    """Configurations ``{name, spec, config, runs}``: runs equal in ``config.json`` but for
    ``seed`` (one run per seed, the last by path when two share one), sorted by name.
    A name shared by two configurations gets the settings they differ in appended."""
    groups: dict[str, dict] = {}
    for r in sorted(runs, key=lambda r: r["path"]):
        s = _settings(r)
        g = groups.setdefault(json.dumps(s, sort_keys=True, default=str),
                              {"settings": s, "runs": {}})
        seed = r["config"].get("seed")
        if seed in g["runs"]:
            logger.warning("translate report: two runs of %s with seed %s; using %s",
                           r["spec"], seed, r["path"])
        g["runs"][seed] = r
    out = []
    for g in groups.values():
        members = [g["runs"][k] for k in sorted(g["runs"], key=str)]
        out.append({"name": _group_name([m["name"] for m in members]), "spec": members[0]["spec"],
                    "config": members[0]["config"], "runs": members, "settings": g["settings"]})
    for g in out:
        others = [o["settings"] for o in out if o is not g and o["name"] == g["name"]]
        if others:
            diff = sorted({k for o in others for k in set(o) | set(g["settings"])
                           if o.get(k) != g["settings"].get(k)})
            g["name"] += " [" + ", ".join(f"{k}={g['settings'].get(k)}" for k in diff[:3]) + "]"
    return sorted(out, key=lambda g: g["name"])


def _interval(values: list[float]) -> Interval | None:
    return seed_interval(values) if values else None


def _show(iv: Interval | None, digits: int = 2) -> str:
    if iv is None:
        return "-"
    return iv.format(digits, 1.0) if iv.has_interval else f"{iv.mean:.{digits}f}"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _verdicts(columns: list[tuple[str, dict[str, Interval]]], higher_is_better: bool
              ) -> list[str]:
    """A blank line, the verdict header and one ``- what: ...`` line per column that
    compares two or more entries (nothing when none does)."""
    lines = [f"- {ranked_verdict(named, higher_is_better, what)}"
             for what, named in columns if len(named) > 1]
    if not lines:
        return []
    better = "higher" if higher_is_better else "lower"
    return ["", f"Verdict ({better} is better; ranked only where the 95% intervals do not "
            "overlap; braces: not separated):", *lines]


def _one(groups: list[dict], spec: str, waitk=True) -> dict | None:
    """The configuration of ``spec`` (wait-k trained when ``waitk``; else offline); the
    last by name when several."""
    found = [g for g in groups
             if g["spec"] == spec and (g["config"]["waitk"] is not None) == waitk]
    if len(found) > 1:
        logger.warning("translate report: several configurations of %s; using %s", spec,
                       found[-1]["name"])
    return found[-1] if found else None


def per_block_ablation(runs: list[dict]) -> tuple[list[dict], dict | None]:
    """Rows ``{name, spec, step, seeds, valid_loss, interval, leap_valid_loss, delta}`` of
    every wait-k configuration whose spec mixes mechanisms, compared with the
    homogeneous LeaP wait-k configuration at one step: the last validation step that
    every run of LeaP and of every mix reached (so a mix trained on afterwards is
    still ranked where the others stopped). Losses are means over seeds (``interval``:
    the mix's 95% interval). Also the best row (lowest difference) or None."""
    groups = group_translate_runs(runs)
    leap = _one(groups, LEAP)
    mixes = [g for g in groups
             if g["config"]["waitk"] is not None and _homogeneous(g["spec"]) is None]
    common = set.intersection(*(set(r["valid"]) for r in leap["runs"])) if leap else set()
    for g in mixes:
        for r in g["runs"]:
            common &= set(r["valid"])
    step = max(common) if common else None

    def losses(g):
        return [] if g is None or step is None else [r["valid"][step] for r in g["runs"]]

    ref = _mean(losses(leap))
    rows = []
    for g in mixes:
        iv = _interval(losses(g))
        loss = None if iv is None else iv.mean
        rows.append({"name": g["name"], "spec": g["spec"], "step": step, "seeds": len(g["runs"]),
                     "valid_loss": loss, "interval": iv, "leap_valid_loss": ref,
                     "delta": None if loss is None or ref is None else loss - ref})
    ranked = [row for row in rows if row["delta"] is not None]
    best = min(ranked, key=lambda row: row["delta"]) if ranked else None
    return rows, best


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _steps(runs: list[dict]) -> str:
    return " / ".join(sorted({str(r["results"]["steps"]) for r in runs}, key=int))


def render_training_table(groups: list[dict]) -> list[str]:
    lines = [("| run | spec | wait-k | causal enc | seeds | steps | train min | target tokens/s "
             "| best valid loss (step) | parameters |"),
             "|---|---|---|---|---:|---:|---:|---:|---|---:|"]
    for g in groups:
        c, res = g["config"], [r["results"] for r in g["runs"]]
        tps = _mean(x.get("train_tokens_per_s") for x in res)
        best = _interval([x["best_valid_loss"] for x in res
                          if x.get("best_valid_loss") is not None])
        at = f" ({res[0].get('best_step', '-')})" if len(res) == 1 else ""
        lines.append(f"| {g['name']} | `{g['spec']}` | {c['waitk'] or 'offline'} "
                     f"| {'yes' if c['causal_encoder'] else 'no'} | {len(res)} "
                     f"| {_steps(g['runs'])} "
                     f"| {_minutes(_mean(x.get('train_wall_s') for x in res))} "
                     f"| {'-' if tps is None else f'{tps:.0f}'} "
                     f"| {_show(best, 3)}{at} | {res[0].get('parameters', '-')} |")
    return lines


def render_ablation_table(rows: list[dict], best: dict | None, leap: dict | None = None
                          ) -> list[str]:
    lines = ["| run | spec | seeds | step | valid loss | all-LeaP valid loss | difference |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        mark = " (best)" if best is not None and row is best else ""
        delta = "-" if row["delta"] is None else f"{row['delta']:+.3f}"
        lines.append(f"| {row['name']}{mark} | `{row['spec']}` | {row['seeds']} "
                     f"| {row['step'] or '-'} | {_show(row['interval'], 3)} "
                     f"| {fmt(row['leap_valid_loss'])} | {delta} |")
    named = {row["name"]: row["interval"] for row in rows if row["interval"] is not None}
    if leap is not None and rows and rows[0]["step"] is not None:
        named[f"{leap['name']} (all-LeaP)"] = _interval([r["valid"][rows[0]["step"]]
                                                          for r in leap["runs"]])
    return lines + _verdicts([("valid loss", named)], False)


def _simul_rows(groups: list[dict]) -> dict[tuple, list[dict]]:
    """``{(k, group name, encoder): [one simul result per seed]}``."""
    out: dict[tuple, list[dict]] = {}
    for g in groups:
        for r in g["runs"]:
            found = {}
            for s in r["simuls"]:  # the last of a run's results per (k, encoder)
                found[(s["k"], s.get("encoder", "incremental"))] = s
            for (k, enc), s in found.items():
                out.setdefault((k, g["name"], enc), []).append({**s, "_group": g})
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])))


def render_simul_table(groups: list[dict]) -> list[str]:
    lines = [("| run | spec | k | seeds | sentences | BLEU | AL | LAAL | AP | DAL | AL_CA (ms) "
             "| decoder tokens/s |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = _simul_rows(groups)
    for (k, name, enc), sims in rows.items():
        label = name + ("" if enc == "incremental" else f" ({enc})")
        tps = _mean(s.get("decoder_tokens_per_s") for s in sims)
        lines.append(f"| {label} | `{sims[0]['_group']['spec']}` | {k} | {len(sims)} "
                     f"| {sims[0].get('sentences', '-')} "
                     f"| {_show(_interval([s['BLEU'] for s in sims]))} | "
                     + " | ".join(fmt(_mean(s.get(key) for s in sims))
                                  for key in ("AL", "LAAL", "AP", "DAL", "AL_CA"))
                     + f" | {'-' if tps is None else f'{tps:.0f}'} |")
    return lines + _verdicts(
        [(f"wait-{k} BLEU", {name: _interval([s["BLEU"] for s in sims])
                             for (kk, name, enc), sims in rows.items()
                             if kk == k and enc == "incremental"})
         for k in sorted({key[0] for key in rows})], True)


def render_offline_table(groups: list[dict]) -> list[str]:
    lines = [("| run | spec | trained | split | seeds | sentences | beam | length predictor "
             "| length MAE | BLEU | target tokens/s |"),
             "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    rows: dict[tuple, list[dict]] = {}
    for g in groups:
        for r in g["runs"]:
            for e in r["evals"]:
                key = (g["name"], e["split"], e["beam"], e.get("length_predictor") or "-")
                rows.setdefault(key, []).append({**e, "_group": g})
    for (name, split, beam, pred), evs in rows.items():
        g = evs[0]["_group"]
        tps = _mean(e.get("target_tokens_per_s") for e in evs)
        lines.append(f"| {name} | `{g['spec']}` | {g['config']['waitk'] or 'offline'} "
                     f"| {split} | {len(evs)} | {evs[0].get('sentences', '-')} | {beam} "
                     f"| {pred} | {fmt(_mean(e.get('length_mae') for e in evs))} "
                     f"| {_show(_interval([e['BLEU'] for e in evs]))} "
                     f"| {'-' if tps is None else f'{tps:.0f}'} |")
    return lines + _verdicts(
        [(f"{split} BLEU", {f"{name} (beam {beam}" + ("" if pred == "-" else f", {pred}") + ")":
                            _interval([e["BLEU"] for e in evs])
                            for (name, sp, beam, pred), evs in rows.items() if sp == split})
         for split in sorted({key[1] for key in rows})], True)


def render_translate_report(runs: list[dict], command: str = "", notes: list[str] | None = None
                            ) -> str:
    """The markdown report (module docstring); ``notes``: extra bullet lines for the header."""
    groups = group_translate_runs(runs)
    lines = ["# Translation results (en->ja)", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- {n}" for n in notes or []]
    stale = [p for r in runs for p in r.get("stale", [])]
    if stale:
        lines.append(f"- left out: {len(stale)} evaluation(s) of a checkpoint their run has "
                     f"since replaced (resumed and trained on; run them again): "
                     f"{', '.join(stale)}")
    lines += [f"- {INTERVAL_NOTE}"]
    lines += ["", "## Training", "", *render_training_table(groups), ""]
    rows, best = per_block_ablation(runs)
    if rows:
        lines += ["## Per-block ablation", "",
                  ("Each run changes one block kind of the all-LeaP model; validation loss "
                   "(label-smoothed, per target token, at the run's validation wait-k) at the "
                   "last step every mix and the all-LeaP run evaluated. Lower is better."), "",
                  *render_ablation_table(rows, best, _one(groups, LEAP)), ""]
    if any(r["simuls"] for r in runs):
        lines += ["## Simultaneous (wait-k)", "",
                  ("Latency in source subword tokens (SimulEval definitions, reference "
                   "length); AL_CA is the computation-aware AL in ms with each source token "
                   "arriving after `source_ms_per_token` ms."), "", *render_simul_table(groups),
                  ""]
    if any(r["evals"] for r in runs):
        lines += ["## Offline (full sentence)", "", *render_offline_table(groups), ""]
    return "\n".join(lines)
