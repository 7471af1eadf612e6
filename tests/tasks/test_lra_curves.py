"""LRA learning curves (``lra-report --curves``): metrics.jsonl read per run, seeds averaged
step by step, the last record of a step kept, the table, the figure and the CLI errors."""

import json

import pytest

from leapformer.cli import main
from leapformer.tasks.lra.curves import (
    learning_curves,
    plot_curves,
    read_metrics,
    render_curves,
)
from leapformer.tasks.lra.report import collect


def _run(root, mech, seed, losses, accs, task="image", extra_lines=()):
    """A run folder: results.json and metrics.jsonl with a train record every 10 steps
    and an eval record every 20."""
    d = root / f"s{seed}" / f"{task}-{mech}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(
        {"task": task, "attention": mech, "seed": seed, "test_accuracy": accs[-1]}))
    lines = [json.dumps({"step": 10 * (i + 1), "kind": "train", "loss": x})
             for i, x in enumerate(losses)]
    lines += [json.dumps({"step": 20 * (i + 1), "kind": "eval", "accuracy": a, "loss": 1.0})
              for i, a in enumerate(accs)]
    (d / "metrics.jsonl").write_text("\n".join([*lines, *extra_lines]) + "\n")
    return d


def test_read_metrics_keeps_the_last_record_of_a_step(tmp_path):
    d = _run(tmp_path, "leap", 0, [2.0, 1.5], [0.4],
             extra_lines=[json.dumps({"step": 20, "kind": "eval", "accuracy": 0.5})])
    train, valid = read_metrics(d / "metrics.jsonl")
    assert train == {10: 2.0, 20: 1.5} and valid == {20: 0.5}
    (d / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="metrics.jsonl:1: not a JSON record"):
        read_metrics(d / "metrics.jsonl")


def test_seeds_are_averaged_and_rendered(tmp_path):
    _run(tmp_path, "softmax", 0, [2.0, 1.0, 0.8, 0.6], [0.30, 0.50])
    _run(tmp_path, "softmax", 1, [2.2, 1.2, 1.0, 0.8], [0.40, 0.70])
    _run(tmp_path, "leap", 0, [2.1, 1.1, 0.9, 0.7], [0.20, 0.60])
    _run(tmp_path, "leap", 0, [1.0], [0.9], task="text")  # another task: not read
    results = collect([tmp_path])
    curves = learning_curves(results, "image")
    assert list(curves) == ["softmax", "leap"]
    assert curves["softmax"]["valid"][40] == pytest.approx((0.60, 0.50, 0.70))
    assert curves["softmax"]["train"][20] == pytest.approx((1.1, 1.0, 1.2))
    lines = render_curves(curves, "image")
    assert "| 40 | 60.0 / 0.700 | 60.0 / 0.700 |" in lines  # mean loss at step 40: 0.7
    assert "(seeds: softmax: 2; leap: 1)" in " ".join(lines)
    png = plot_curves(curves, tmp_path / "c.png", task="image")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no run of task 'listops' has a metrics.jsonl"):
        learning_curves(results, "listops")


def test_cli_curves(tmp_path, capsys):
    _run(tmp_path, "softmax", 0, [2.0, 1.0], [0.3])
    out, fig = tmp_path / "r.md", tmp_path / "c.png"
    assert main(["lra-report", "--runs", str(tmp_path), "--out", str(out), "--curves", "image",
                 "--curves-figure", str(fig)]) == 0
    assert "## Learning curves: image" in out.read_text() and fig.is_file()
    assert main(["lra-report", "--runs", str(tmp_path), "--curves", "image"]) == 0
    assert "## Learning curves: image" in capsys.readouterr().out  # printed without --out
    assert main(["lra-report", "--runs", str(tmp_path), "--curves-figure", str(fig)]) == 2
    assert "--curves-figure needs --curves TASK" in capsys.readouterr().err
    assert main(["lra-report", "--runs", str(tmp_path), "--out", str(out),
                 "--curves", "text"]) == 2
    assert "no run of task 'text' has a metrics.jsonl" in capsys.readouterr().err
