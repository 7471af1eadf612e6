"""``translate report`` on hand-made run folders: collection, the per-block ablation at
equal steps, the targets (numbers chosen here so each target's outcome is known),
rendering, CLI and errors."""

import json

import pytest

from leapformer.cli import build_parser
from leapformer.tasks.translate.report import (
    collect_translate_runs,
    evaluate_translate_targets,
    per_block_ablation,
    render_translate_report,
)


def write_run(root, name, spec, *, waitk="multi", valid=None, simul=None, evals=None,
              length_predictor=None):
    """A run folder as 'translate train' leaves it, with eval/simul result folders.
    ``valid``: {step: loss}; ``simul``: {k: (BLEU, AL_CA)}; ``evals``: [(predictor, BLEU)]."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "format": "leapformer-translate-run", "version": 1, "spec": spec, "waitk": waitk,
        "causal_encoder": waitk is not None, "length_predictor": length_predictor}))
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


def test_targets_per_k(runs):
    t = {row["name"]: row for row in evaluate_translate_targets(collect_translate_runs([runs]))}
    # k=3: LeaP 9.5 vs softmax 10.0 (within 1), AL_CA 900 < 1000; the mix 9.0 < 9.5
    assert t["wait-3: LeaP BLEU - softmax BLEU"]["status"] == "PASS"
    assert t["wait-3: LeaP BLEU - softmax BLEU"]["value"] == pytest.approx(-0.5)
    assert t["wait-3: LeaP AL_CA - softmax AL_CA"]["status"] == "PASS"
    assert t["wait-3: best mix BLEU - LeaP BLEU"]["status"] == "MISS"
    # k=5: 10.5 vs 12.0 (1.5 behind), AL_CA 1700 > 1600; no mix result at k=5
    assert t["wait-5: LeaP BLEU - softmax BLEU"]["status"] == "MISS"
    assert t["wait-5: LeaP AL_CA - softmax AL_CA"]["status"] == "MISS"
    assert t["wait-5: best mix BLEU - LeaP BLEU"]["status"] == "n/a"


def test_report_renders_every_section(runs):
    text = render_translate_report(collect_translate_runs([runs]), command="leapformer x",
                                   notes=["machine: test"])
    for head in ("## Training", "## Per-block ablation", "## Simultaneous (wait-k)",
                 "## Offline (full sentence)", "## Targets"):
        assert head in text
    assert "- command: `leapformer x`" in text and "- machine: test" in text
    assert "| leap-xlin (best) |" in text
    assert "| cos | `enc=cosformer,dec=cosformer,cross=cosformer` | offline | test | 10 | 4 " \
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
