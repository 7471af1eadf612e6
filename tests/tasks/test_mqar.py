"""MQAR: the model, one run (learning, resume, refusing a finished folder), the grid, the
report and the CLI commands."""

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leapformer.cli import mqar as mqar_cli
from leapformer.data.mqar import load_mqar, make_mqar
from leapformer.models.mqar import MQARConfig, MQARModel
from leapformer.tasks.mqar import run as run_module
from leapformer.tasks.mqar import mechanism_label, run_mqar
from leapformer.tasks.mqar.grid import parse_cell, run_dir, run_grid
from leapformer.tasks.mqar.report import aggregate, collect, render_report, select_best
from leapformer.train import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

LINEAR_FAMILY = ("linear", "elu", "performer", "cosformer", "leap")
TINY = {"d_model": 16, "seq_len": 16, "num_kv": 2, "vocab": 32, "n_train": 64, "n_valid": 16,
        "n_test": 16, "batch_size": 8, "lr": 1e-3}


def _batch(n=4, T=32, K=4, V=64, seed=0):
    return tuple(map(torch.from_numpy, make_mqar(n, T, K, V, seed)))


# -- model ----------------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["softmax", "leap"])
def test_loss_and_logits_only_at_targets(mechanism):
    torch.manual_seed(0)
    model = MQARModel(MQARConfig(vocab=64, d_model=32, attention=mechanism, max_length=32,
                                 short_conv=True, mlp=True))
    x, y = _batch()
    seen = []
    model.norm.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    loss, logits = model(x, y)
    mask = y != -100
    assert seen == [(int(mask.sum()), 32)]  # the output projection ran at the targets only
    assert logits.shape == (int(mask.sum()), 64)
    full = model.logits(model.hidden_states(x))  # [B, T, V] at every position
    torch.testing.assert_close(logits, full[mask])
    torch.testing.assert_close(loss, F.cross_entropy(full[mask], y[mask]))
    # causal: tokens after the last query do not change the loss
    last = int(mask.nonzero()[:, 1].max())
    if last + 1 < x.shape[1]:
        x2 = x.clone()
        x2[:, last + 1:] = 5
        torch.testing.assert_close(model(x2, y)[0], loss)


def test_model_errors():
    model = MQARModel(MQARConfig(vocab=64, d_model=16, max_length=32))
    x, y = _batch()
    with pytest.raises(ValueError, match="labels hold no target"):
        model(x, torch.full_like(y, -100))
    with pytest.raises(ValueError, match="labels must be a tensor"):
        model(x, y[:, :5])
    with pytest.raises(ValueError, match="position table"):
        model(*_batch(T=64, V=128))
    with pytest.raises(ValueError, match="no causal form"):
        MQARConfig(vocab=64, d_model=16, attention="linformer")
    with pytest.raises(ValueError, match="heads"):
        MQARConfig(vocab=64, d_model=30, heads=4)


@pytest.mark.parametrize("mechanism", LINEAR_FAMILY)
def test_state_bytes_constant_for_linear_family(mechanism):
    model = MQARModel(MQARConfig(vocab=64, d_model=64, attention=mechanism, max_length=64))
    sizes = {model.state_bytes(t) for t in (16, 256, 4096, 1 << 20)}
    assert len(sizes) == 1
    P = 72  # value width 64 + 1, rounded up to 8
    groups = 2 if mechanism in ("cosformer", "leap") else 1  # sin and cos halves
    assert sizes == {groups * 64 * P * 4}  # one head: feature size 64 x value width P


def test_state_bytes_linear_in_length_for_softmax():
    d = 32
    model = MQARModel(MQARConfig(vocab=64, d_model=d, max_length=64, short_conv=True))
    conv = 2 * d * 4  # kernel 3: the two previous inputs
    sizes = [model.state_bytes(t) for t in (64, 128, 192, 1 << 20)]
    assert sizes[:3] == [2 * d * 4 * t + conv for t in (64, 128, 192)]  # keys and values
    assert sizes[3] == 2 * d * 4 * (1 << 20) + conv  # computed, never allocated
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        model.state_bytes(0)


# -- one run --------------------------------------------------------------------------
def test_tiny_softmax_run_learns(tmp_path):
    out = tmp_path / "run"
    # 4 pairs, not 2: with 2, some seeds stay at 50% (copying either value of the context)
    res = run_mqar("softmax", d_model=64, seq_len=32, num_kv=4, vocab=64, steps=250, lr=3e-3,
                   batch_size=128, n_train=8000, n_valid=200, n_test=400, eval_every=50,
                   seed=0, short_conv=True, out=out, progress=False, command="pytest tiny")
    chance = 1 / 32  # values are drawn from 32 tokens
    assert res["test_accuracy"] > 0.95 > 30 * chance  # seeds 0-3: >= 99.8%
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_accuracy"] == res["test_accuracy"]
    assert saved["command"] == "pytest tiny" and saved["steps"] == 250
    assert saved["state_bytes"] == 2 * 64 * 4 * 32 + 2 * 64 * 4
    assert len(saved["test_correct_per_sequence"]) == 400
    assert np.mean(saved["test_correct_per_sequence"]) / 4 == pytest.approx(res["test_accuracy"])
    for key in ("lr", "batch_size", "train_wall_s", "best_valid_accuracy", "config", "d_model"):
        assert key in saved
    assert saved["config"]["data"]["seeds"] == {"train": 0, "valid": 1, "test": 2}
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "eval"] == [50, 100, 150, 200, 250]


def test_refuses_existing_run_folder(tmp_path):
    out = tmp_path / "run"
    run_mqar("linear", steps=2, eval_every=2, out=out, progress=False, **TINY)
    with pytest.raises(FileExistsError, match=r"already holds a run \(finished"):
        run_mqar("linear", steps=2, eval_every=2, out=out, progress=False, **TINY)
    (out / "results.json").unlink()
    with pytest.raises(FileExistsError, match="already holds a run"):
        run_mqar("linear", steps=2, eval_every=2, out=out, progress=False, **TINY)
    again = run_mqar("linear", steps=2, eval_every=2, out=out, progress=False, overwrite=True,
                     **TINY)
    assert again["steps"] == 2 and (out / "results.json").is_file()
    with pytest.raises(ValueError, match="settings differ"):
        run_mqar("linear", steps=2, eval_every=2, out=out, progress=False, resume=True,
                 **{**TINY, "lr": 2e-3})
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        run_mqar("linear", steps=2, out=tmp_path / "none", resume=True, progress=False, **TINY)
    # a short run extended: its warm-up (capped at steps - 1) grows with it
    longer = run_mqar("linear", steps=4, eval_every=2, out=out, progress=False, resume=True,
                      **TINY)
    assert longer["steps"] == 4
    with pytest.raises(ValueError, match=r"differ in \['warmup_steps'\]"):
        run_mqar("linear", steps=6, eval_every=2, out=out, progress=False, resume=True,
                 warmup_steps=2, **TINY)


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    kw = {**TINY, "steps": 8, "eval_every": 4, "progress": False}
    whole = run_mqar("leap", out=tmp_path / "whole", **kw)

    real = run_module._batch_fn

    def interrupted(*args):
        get = real(*args)

        def get_batch(i):
            if i == 6:
                raise KeyboardInterrupt
            return get(i)
        return get_batch

    monkeypatch.setattr(run_module, "_batch_fn", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_mqar("leap", out=tmp_path / "part", **kw)
    assert load_checkpoint(tmp_path / "part" / "last.pt")["step"] == 4
    monkeypatch.setattr(run_module, "_batch_fn", real)
    part = run_mqar("leap", out=tmp_path / "part", resume=True, **kw)
    a = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert part["test_accuracy"] == whole["test_accuracy"]
    assert part["train_loss"] == whole["train_loss"]
    loss = [[r["loss"] for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text()
                                    .splitlines()) if r["kind"] == "train"]
            for d in ("whole", "part")]
    assert loss[0] == loss[1]


# -- grid and report ------------------------------------------------------------------
def _result(root, mech, width, lr, seed, acc, valid, T=64, K=4, state=1000, correct=None):
    d = run_dir(root, T, K, mech, width, lr, seed)
    d.mkdir(parents=True)
    data = {"task": "mqar", "attention": mech, "d_model": width, "seq_len": T, "num_kv": K,
            "seed": seed, "lr": lr, "test_accuracy": acc, "best_valid_accuracy": valid,
            "state_bytes": state, "vocab": 8192, "steps": 100}
    if correct is not None:
        data["test_correct_per_sequence"] = correct
    (d / "results.json").write_text(json.dumps(data))


def test_best_lr_by_validation_and_intervals(tmp_path):
    _result(tmp_path, "softmax", 64, 1e-3, 0, 0.50, 0.60)
    _result(tmp_path, "softmax", 64, 1e-2, 0, 0.99, 0.98)
    _result(tmp_path, "softmax", 64, 1e-3, 1, 0.97, 0.99)  # valid picks it over the next
    _result(tmp_path, "softmax", 64, 1e-2, 1, 0.995, 0.90)
    _result(tmp_path, "leap", 64, 1e-3, 0, 0.40, 0.40, correct=[0, 2, 4, 1] * 5)
    results = collect([tmp_path])
    assert len(results) == 5
    kept = {(r["attention"], r["seed"]): r["lr"] for r in select_best(results)}
    assert kept == {("softmax", 0): 1e-2, ("softmax", 1): 1e-3, ("leap", 0): 1e-3}
    agg = aggregate(results)
    soft = agg[(64, 4, "softmax", 64)]["interval"]
    assert soft.method == "t" and soft.mean == pytest.approx((0.99 + 0.97) / 2)
    leap = agg[(64, 4, "leap", 64)]["interval"]
    assert leap.method == "bootstrap" and leap.mean == pytest.approx(7 / 16)
    text = render_report(results, command="leapformer mqar-report")
    assert "| softmax | 98.0 ± " in text and "| leap | 43.8 ± " in text
    assert "MISS" in text  # softmax 98% < 99%


def test_parse_cell():
    assert parse_cell("128:8") == (128, 8)
    with pytest.raises(ValueError, match="SEQ_LEN:NUM_KV"):
        parse_cell("128x8")


def test_grid_skips_finished_runs(tmp_path):
    opts = {"n_train": 32, "n_valid": 8, "n_test": 8, "eval_every": 2}
    kw = {"mechanisms": ["softmax", "elu"], "widths": [16], "cells": [(16, 2)],
          "lrs": [1e-3, 1e-2], "seeds": [0], "steps": 2, "vocab": 32, "progress": False,
          "queries_per_batch": 8, "run_options": opts}
    first = run_grid(tmp_path, **kw)
    assert first["trained"] == 4 and first["skipped"] == 0 and len(first["runs"]) == 2
    assert (tmp_path / "report.md").is_file() and (tmp_path / "figure.png").is_file()
    again = run_grid(tmp_path, **kw)
    assert again["trained"] == 0 and again["skipped"] == 4
    best = json.loads((tmp_path / "best.json").read_text())
    assert {r["attention"] for r in best["runs"]} == {"softmax", "elu"}
    with pytest.raises(ValueError, match="no causal form"):
        run_grid(tmp_path, **{**kw, "mechanisms": ["linformer"]})


def test_grid_files_and_reports_mechanism_options_apart(tmp_path):
    kw = {"mechanisms": ["leap"], "widths": [16], "cells": [(16, 2)], "lrs": [1e-2],
          "seeds": [0], "steps": 2, "vocab": 32, "progress": False, "queries_per_batch": 8,
          "run_options": {"n_train": 32, "n_valid": 8, "n_test": 8, "eval_every": 2}}
    run_grid(tmp_path, **kw)
    res = run_grid(tmp_path, **kw, mechanism_options={"head_norm": "rms"})
    assert res["trained"] == 1  # not mistaken for the plain run
    assert (tmp_path / "T16-kv2" / "leap+head_norm=rms-d16" / "lr0.01-s0" / "results.json"
            ).is_file()
    found = {r["attention"]: r for r in collect([tmp_path])}
    assert set(found) == {"leap", "leap+head_norm=rms"}
    assert found["leap+head_norm=rms"]["mechanism"] == "leap"
    assert found["leap+head_norm=rms"]["mechanism_options"] == {"head_norm": "rms"}
    assert "| leap+head_norm=rms |" in render_report(list(found.values()))
    # a bad option is refused before any run trains, even for a later mechanism
    with pytest.raises(ValueError, match="head_norm must be one of"):
        run_grid(tmp_path / "bad", **{**kw, "mechanisms": ["linear", "leap"]},
                 mechanism_options={"head_norm": "bad"})
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="not a folder name"):
        run_grid(tmp_path / "bad", **kw, mechanism_options={"head_norm": "../x"})
    assert mechanism_label("leap", {"q_scale": True, "head_norm": None}) == \
        "leap+head_norm=null,q_scale=true"
    assert mechanism_label("leap", {}) == "leap"
    with pytest.raises(ValueError, match="run_options cannot set"):
        run_grid(tmp_path, **{**kw, "run_options": {"mechanism_options": {}}})


# -- CLI --------------------------------------------------------------------------------
def _main(argv):
    """The commands as ``leapformer`` wires them (mqar family + ``data mqar``)."""
    parser = argparse.ArgumentParser(prog="leapformer")
    commands = parser.add_subparsers(dest="command", required=True)
    mqar_cli.register(commands)
    datasets = commands.add_parser("data").add_subparsers(dest="dataset", required=True)
    mqar_cli.add_data_mqar(datasets)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_data_mqar(tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert _main(["data", "mqar", "--n", "5", "--seq-len", "16", "--num-kv", "2", "--vocab",
                  "32", "--seed", "1", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("wrote 5 MQAR sequences") and "10 queries" in line
    x, y = load_mqar(out)
    assert np.array_equal(x, make_mqar(5, 16, 2, 32, 1)[0]) and y.shape == (5, 16)
    with pytest.raises(ValueError, match="seq_len must be even"):
        _main(["data", "mqar", "--n", "5", "--seq-len", "15", "--num-kv", "2", "--vocab",
               "32", "--out", str(out)])


def test_cli_report_and_run(tmp_path, capsys):
    _result(tmp_path / "runs", "softmax", 64, 1e-3, 0, 0.995, 0.99)
    _result(tmp_path / "runs", "cosformer", 64, 1e-3, 0, 0.30, 0.31, state=5000)
    md, png = tmp_path / "r.md", tmp_path / "f.png"
    assert _main(["mqar-report", "--runs", str(tmp_path / "runs"), "--out", str(md),
                  "--figure", str(png)]) == 0
    assert "mqar-report: 2 runs" in capsys.readouterr().out
    text = md.read_text()
    assert "## seq_len 64, 4 key-value pairs" in text and "| cosformer | 64 | 4.9 KiB |" in text
    assert png.read_bytes()[:4] == b"\x89PNG"
    _result(tmp_path / "runs", "softmax", 64, 1e-2, 1, 0.50, 0.51)
    assert _main(["mqar-report", "--runs", str(tmp_path / "runs"), "--lrs", "1e-3",
                  "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "mqar-report: 2 runs" in out and "0.01" not in out  # the lr 1e-2 run left out
    with pytest.raises(ValueError, match="no MQAR result matches --lrs/--seeds"):
        _main(["mqar-report", "--runs", str(tmp_path / "runs"), "--lrs", "3e-3"])
    run = tmp_path / "one"
    assert _main(["mqar", "--attention", "elu", "--d-model", "16", "--seq-len", "16",
                  "--num-kv", "2", "--vocab", "32", "--steps", "2", "--n-train", "300",
                  "--n-test", "8", "--eval-every", "2", "--out", str(run),
                  "--no-progress"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("mqar elu d=16 T=16 kv=2: test accuracy") and "{" not in summary
    assert json.loads((run / "results.json").read_text())["batch_size"] == 256
    run = tmp_path / "norm"
    assert _main(["mqar", "--attention", "elu", "--d-model", "16", "--seq-len", "16",
                  "--num-kv", "2", "--vocab", "32", "--steps", "2", "--n-train", "300",
                  "--n-test", "8", "--eval-every", "2", "--out", str(run), "--no-progress",
                  "--mechanism-option", "head_norm=layer"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("mqar elu+head_norm=layer d=16")
    assert json.loads((run / "results.json").read_text())["mechanism_options"] == {
        "head_norm": "layer"}
    with pytest.raises(ValueError, match="head_norm must be one of"):  # run kept
        _main(["mqar", "--attention", "elu", "--d-model", "16", "--seq-len", "16",
               "--num-kv", "2", "--vocab", "32", "--out", str(run), "--overwrite",
               "--mechanism-option", "head_norm=bad"])
    assert (run / "results.json").is_file()


def test_report_paired_by_seed(tmp_path, capsys):
    # unpaired, leap and linear overlap (the seed moves both); paired, leap is always higher
    for seed, base in enumerate((0.2, 0.6, 0.4, 0.8)):
        _result(tmp_path, "leap", 64, 1e-3, seed, base + 0.1 + 0.01 * seed, 0.5)
        _result(tmp_path, "linear", 64, 1e-3, seed, base, 0.5)
    _result(tmp_path, "cosformer", 64, 1e-3, 9, 0.3, 0.5)
    results = collect([tmp_path])
    plain = render_report(results)
    assert "Paired by seed" not in plain
    text = render_report(results, paired="leap")
    assert "- d=64:" in text
    # differences 10, 11, 12, 13 points: 11.5 ± t(0.975, 3) * sd / 2 = 11.5 ± 2.1
    assert ("  - leap - linear: +11.5 ± 2.1 points over 4 paired seeds (leap higher in 4 of 4, "
            "sign test p = 0.125): separated, leap better") in text
    assert "leap - cosformer" not in text  # no shared seed
    with pytest.raises(ValueError, match="paired must name a mechanism"):
        render_report(results, paired="softmax")
    assert _main(["mqar-report", "--runs", str(tmp_path), "--paired", "leap"]) == 0
    assert "leap - linear: +11.5" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--paired must name a mechanism of the runs"):
        _main(["mqar-report", "--runs", str(tmp_path), "--paired", "gla"])


def test_report_focus_says_where_leap_stands(tmp_path, capsys):
    """The focus table: difference of the means per cell and width, "better"/"worse" only
    when the intervals do not overlap, "-" where the other mechanism did not run."""
    for seed in range(3):
        _result(tmp_path, "leap", 64, 1e-3, seed, 0.90 + 0.01 * seed, 0.5)
        _result(tmp_path, "linear", 64, 1e-3, seed, 0.50 + 0.01 * seed, 0.5)  # far below
        _result(tmp_path, "cosformer", 64, 1e-3, seed, 0.89 + 0.03 * seed, 0.5)  # overlaps
        _result(tmp_path, "softmax", 64, 1e-3, seed, 1.00, 0.5)  # always 100%: above leap
    _result(tmp_path, "leap", 128, 1e-3, 0, 0.95, 0.5)
    results = collect([tmp_path])
    text = render_report(results)
    assert "## Where leap stands" in text
    row = next(line for line in text.splitlines() if line.startswith("| (64, 4) | 64 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:] == ["-9.0 worse", "+40.0 better", "-1.0 n.s."]  # softmax, linear, cosformer
    wide = next(line for line in text.splitlines() if line.startswith("| (64, 4) | 128 |"))
    assert wide.rstrip().endswith("| - | - | - |")
    assert ("vs linear: 1 better, 0 worse, 0 not separated; "
            "vs cosformer: 0 better, 0 worse, 1 not separated") in text
    assert "relative to leap's at the same point: softmax 1.00x, linear 1.00x" in text
    assert "Where linear stands" in render_report(results, focus="linear")
    assert "Where" not in render_report(results, focus=None)
    with pytest.raises(ValueError, match="focus must name a mechanism of the runs"):
        render_report(results, focus="gla")
    lone = collect([tmp_path])
    lone = [r for r in lone if r["attention"] == "leap" and r["d_model"] == 128] + [
        r for r in lone if r["attention"] == "linear"]  # no shared (cell, width)
    assert "No other mechanism ran at leap's cells and widths." in render_report(lone)
    assert _main(["mqar-report", "--runs", str(tmp_path), "--focus", "cosformer",
                  "--note", "made by the test"]) == 0
    out = capsys.readouterr().out
    assert "## Where cosformer stands" in out and "\n- made by the test\n" in out
    with pytest.raises(ValueError, match="--focus must name a mechanism of the runs"):
        _main(["mqar-report", "--runs", str(tmp_path), "--focus", "gla"])
