"""``translate report`` on hand-made run folders: collection, the per-block ablation at
equal steps, runs over seeds (mean ± t interval computed here by hand, verdicts for a
separated and a not-separated case), rendering without targets, CLI and errors."""

import json

import pytest

from leapformer.cli import build_parser
from leapformer.tasks.translate.report import (
    collect_translate_runs,
    group_translate_runs,
    per_block_ablation,
    render_translate_report,
)


def write_run(root, name, spec, *, waitk="multi", valid=None, simul=None, evals=None,
              length_predictor=None, seed=0):
    """A run folder as 'translate train' leaves it, with eval/simul result folders.
    ``valid``: {step: loss}; ``simul``: {k: (BLEU, AL_CA)}; ``evals``: [(predictor, BLEU)]."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "format": "leapformer-translate-run", "version": 1, "spec": spec, "waitk": waitk,
        "causal_encoder": waitk is not None, "length_predictor": length_predictor,
        "seed": seed}))
    steps = max(valid or {0: 0})
    (run / "results.json").write_text(json.dumps({
        "steps": steps, "train_wall_s": 600.0, "train_tokens_per_s": 1234.0,
        "best_valid_loss": min((valid or {0: 9.0}).values()), "best_step": steps,
        "parameters": 1000}))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "kind": "train", "loss": 99.0}) + "\n"
        + json.dumps({"step": s, "kind": "eval", "loss": v}) + "\n"
        for s, v in sorted((valid or {}).items())))
    for k, (bleu, al_ca) in (simul or {}).items():
        d = run / f"simul-test-k{k}-incremental"
        d.mkdir()
        (d / "results.json").write_text(json.dumps({
            "split": "test", "k": k, "encoder": "incremental", "sentences": 10, "BLEU": bleu,
            "AL": k - 0.5, "LAAL": k, "AP": 0.6, "DAL": k + 1, "AL_CA": al_ca,
            "decoder_tokens_per_s": 100.0}))
    for pred, bleu in evals or []:
        d = run / f"eval-test-{pred}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps({
            "split": "test", "beam": 4, "sentences": 10, "BLEU": bleu,
            "length_predictor": pred, "length_mae": 0.0 if pred == "oracle" else 2.5,
            "target_tokens_per_s": 50.0}))
    return run


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "softmax", "enc=softmax,dec=softmax,cross=softmax",
              valid={250: 6.0, 500: 5.0}, simul={3: (10.0, 1000.0), 5: (12.0, 1600.0)})
    write_run(root, "leap", "enc=leap,dec=leap,cross=leap", valid={250: 6.1, 500: 5.2},
              simul={3: (9.5, 900.0), 5: (10.5, 1700.0)})
    # ablation: dlin stops at 250 (0.3 worse than LeaP there, xlin 0.1 better)
    write_run(root, "leap-dlin", "enc=leap,dec=linear,cross=leap", valid={250: 6.4})
    write_run(root, "leap-xlin", "enc=leap,dec=leap,cross=linear", valid={250: 6.0, 500: 5.3},
              simul={3: (9.0, 850.0)})
    write_run(root, "cos", "cosformer", waitk=None, valid={250: 6.5},
              evals=[("oracle", 8.0), ("ratio", 7.0)], length_predictor="conv")
    return root


def test_collects_every_run_with_its_results(runs):
    found = collect_translate_runs([runs])
    assert [r["name"] for r in found] == ["cos", "leap", "leap-dlin", "leap-xlin", "softmax"]
    by = {r["name"]: r for r in found}
    assert by["leap"]["valid"] == {250: 6.1, 500: 5.2}
    assert sorted(s["k"] for s in by["softmax"]["simuls"]) == [3, 5]
    assert {e["length_predictor"] for e in by["cos"]["evals"]} == {"oracle", "ratio"}
    assert by["cos"]["spec"] == "enc=cosformer,dec=cosformer,cross=cosformer"
    # a single run folder is taken as is
    assert [r["name"] for r in collect_translate_runs([runs / "leap"])] == ["leap"]


def test_ablation_compares_at_the_last_step_every_mix_reached(runs):
    rows, best = per_block_ablation(collect_translate_runs([runs]))
    by = {r["name"]: r for r in rows}
    assert set(by) == {"leap-dlin", "leap-xlin"}  # homogeneous and offline runs are not mixes
    # dlin stopped at 250, so both are ranked there (xlin's step 500 is not used)
    assert by["leap-dlin"]["step"] == 250 and by["leap-dlin"]["delta"] == pytest.approx(0.3)
    assert by["leap-xlin"]["step"] == 250 and by["leap-xlin"]["delta"] == pytest.approx(-0.1)
    assert best["name"] == "leap-xlin"


def test_seeds_are_grouped_with_t_intervals_and_verdicts(tmp_path):
    # t(0.975, 2) = 4.302653: s = 0.2 -> 4.302653 * 0.2 / sqrt(3) = 0.50; s = 0.1 -> 0.25
    for seed, (soft3, leap3, soft5, leap5) in enumerate(
            [(10.0, 9.0, 12.0, 12.1), (10.4, 9.1, 12.4, 12.3), (10.2, 9.2, 12.2, 11.9)]):
        write_run(tmp_path, f"softmax-s{seed}", "softmax", seed=seed, valid={250: 6.0},
                  simul={3: (soft3, 1000.0), 5: (soft5, 1600.0 + seed)})
        write_run(tmp_path, f"leap-s{seed}", "leap", seed=seed, valid={250: 6.1 + seed / 10},
                  simul={3: (leap3, 900.0), 5: (leap5, 1500.0)})
    write_run(tmp_path, "leap-dlin", "enc=leap,dec=linear,cross=leap", valid={250: 6.4})
    write_run(tmp_path, "cos", "cosformer", simul={3: (9.6, 950.0)})  # one seed
    runs = collect_translate_runs([tmp_path])
    groups = group_translate_runs(runs)
    assert [(g["name"], len(g["runs"])) for g in groups] == [
        ("cos", 1), ("leap", 3), ("leap-dlin", 1), ("softmax", 3)]
    text = render_translate_report(runs)
    sim = {(r[0], r[2]): r for r in _rows(text, "| run | spec | k |")}
    assert sim[("softmax", "3")][3:6] == ["3", "10", "10.20 ± 0.50"]
    assert sim[("leap", "3")][5] == "9.10 ± 0.25"
    assert sim[("softmax", "5")][10] == "1601"  # AL_CA: mean over the seeds
    # [9.70, 10.70] vs [8.85, 9.35]; the single run is named apart, unranked
    assert "- wait-3 BLEU: softmax > leap; single run, no interval: cos" in text
    # 12.20 ± 0.50 and 12.10 ± 0.50
    assert "- wait-5 BLEU: not separated: all intervals overlap" in text
    # ablation: LeaP's mean over its seeds at step 250 (6.1, 6.2, 6.3 -> 6.2)
    rows, best = per_block_ablation(runs)
    assert rows[0]["leap_valid_loss"] == pytest.approx(6.2)
    assert best["delta"] == pytest.approx(0.2)
    # the single-run mix has no interval, so it is not ranked against all-LeaP
    assert "- valid loss: not separated: no interval for leap-dlin (single run)" in text
    train = {r[0]: r for r in _rows(text, "| run | spec | wait-k |")}
    assert train["leap"][4] == "3"  # seeds
    # best valid loss 6.1, 6.2, 6.3: 4.302653 * 0.1 / sqrt(3) = 0.248
    assert train["leap"][8] == "6.200 ± 0.248"


def test_group_names_drop_the_seed_suffix_and_stay_unique(tmp_path):
    write_run(tmp_path / "a", "leap_seed0", "leap", seed=0)
    write_run(tmp_path / "a", "leap_seed1", "leap", seed=1)
    write_run(tmp_path / "b", "leap", "leap", waitk=None, seed=0)
    write_run(tmp_path / "c", "leap", "leap", waitk=None, seed=1)
    groups = group_translate_runs(collect_translate_runs([tmp_path]))
    assert [len(g["runs"]) for g in groups] == [2, 2]
    names = [g["name"] for g in groups]
    assert len(set(names)) == 2 and all(n.startswith("leap") for n in names)
    assert any("waitk=" in n for n in names)


def test_report_renders_every_section(runs):
    text = render_translate_report(collect_translate_runs([runs]), command="leapformer x",
                                   notes=["machine: test"])
    for head in ("## Training", "## Per-block ablation", "## Simultaneous (wait-k)",
                 "## Offline (full sentence)"):
        assert head in text
    for word in ("Targets", "PASS", "MISS", "issue"):
        assert word not in text
    assert "wait-3 BLEU: not separated: no interval for softmax, leap, leap-xlin" in text
    assert "- command: `leapformer x`" in text and "- machine: test" in text
    assert "| leap-xlin (best) |" in text
    assert "| cos | `enc=cosformer,dec=cosformer,cross=cosformer` | offline | test | 1 | 10 | 4 " \
           "| oracle | 0.000 | 8.00 |" in text


def test_cli_writes_the_report(runs, tmp_path, capsys):
    out = tmp_path / "docs" / "simul.md"
    args = build_parser().parse_args(["translate", "report", "--runs", str(runs),
                                      "--out", str(out), "--note", "hello"])
    assert args.func(args) == 0
    assert out.read_text().startswith("# Translation results") and "- hello" in out.read_text()
    args = build_parser().parse_args(["translate", "report", "--runs", str(tmp_path / "none"),
                                      "--out", str(out)])
    assert args.func(args) == 2
    assert "does not exist" in capsys.readouterr().err


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no translation run"):
        collect_translate_runs([tmp_path])
    run = write_run(tmp_path, "bad", "leap", simul={3: (1.0, 1.0)})
    (run / "simul-test-k3-incremental" / "results.json").write_text('{"k": 3}')
    with pytest.raises(ValueError, match="simul-test-k3-incremental.*missing BLEU"):
        collect_translate_runs([tmp_path])
    (run / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="could not read .*config.json"):
        collect_translate_runs([tmp_path])


def _rows(text, header):
    """Cells of the rows of the table whose header starts with ``header``."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header))
    out = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def test_evals_of_a_replaced_checkpoint_are_left_out(tmp_path):
    """A run resumed and trained on after its evaluation: the old evaluation's checkpoint
    step is not the run's best step any more, so the report leaves it out and says so."""
    run = write_run(tmp_path, "cos", "cosformer", waitk=None, valid={250: 6.5, 500: 6.0},
                    evals=[("oracle", 8.0), ("ratio", 7.0)], length_predictor="conv")
    for pred, step in (("oracle", 500), ("ratio", 250)):
        path = run / f"eval-test-{pred}" / "results.json"
        res = json.loads(path.read_text())
        path.write_text(json.dumps({**res, "checkpoint": "best", "checkpoint_step": step}))
    found = collect_translate_runs([tmp_path])
    assert [e["length_predictor"] for e in found[0]["evals"]] == ["oracle"]
    text = render_translate_report(found)
    assert "left out: 1 evaluation(s) of a checkpoint their run has since replaced" in text
    assert "eval-test-ratio" in text
    # a later step (the run resumed and still training) and 'last' at the last step are kept
    for pred, step, ck in (("oracle", 700, "best"), ("ratio", 500, "last")):
        path = run / f"eval-test-{pred}" / "results.json"
        res = json.loads(path.read_text())
        path.write_text(json.dumps({**res, "checkpoint": ck, "checkpoint_step": step}))
    assert len(collect_translate_runs([tmp_path])[0]["evals"]) == 2
