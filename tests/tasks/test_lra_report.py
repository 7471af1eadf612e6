"""The LRA report table."""

import json

import pytest

from leapformer.cli import main
from leapformer.tasks.lra.report import (
    collect,
    evaluate_targets,
    render_report,
    render_table,
)


def _write(root, task, mech, acc):
    d = root / f"{task}-{mech}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "task": task, "attention": mech, "test_accuracy": acc, "train_tokens_per_s": 1000.0,
        "train_steps_per_s": 2.0, "peak_rss_mb": 300.0, "parameters": 123}))


def test_table_and_average(tmp_path, capsys):
    _write(tmp_path, "listops", "leap", 0.40)
    _write(tmp_path, "pathfinder", "leap", 0.60)
    _write(tmp_path, "listops", "softmax", 0.35)
    table = render_table(collect([tmp_path]))
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert list(rows) == ["softmax", "leap"]  # softmax first
    assert "| 40.00 | 60.00 | 50.00 |" in rows["leap"]
    assert "| 35.00 | - | - |" in rows["softmax"]  # no average over a missing task
    out = tmp_path / "report.md"
    assert main(["lra-report", "--runs", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert table.strip() in text and "## Targets" in text


def _speed(leap_vs_linear):
    rows = [{"mode": "train", "mechanism": m, "error": None, "tokens_per_s": t,
             "vs_softmax": t / 100.0, "vs_linear": t / 1000.0, "peak_mb": 10.0}
            for m, t in (("softmax", 100.0), ("linear", 1000.0), ("leap", 1000.0 * leap_vs_linear))]
    return {"config": {"length": 4096}, "machine": {"device": "cpu"}, "rows": rows}


def test_targets(tmp_path):
    # averages: softmax 50, leap 49.5, cosformer 49, linear 52
    for mech, accs in {"softmax": (0.4, 0.6), "leap": (0.39, 0.6), "cosformer": (0.38, 0.6),
                       "linear": (0.44, 0.6)}.items():
        for task, acc in zip(("listops", "text"), accs):
            _write(tmp_path, task, mech, acc)
    results = collect([tmp_path])
    got = {t["name"]: t for t in evaluate_targets(results, _speed(0.75))}
    cos = got["LeaP average accuracy - cosFormer's"]
    assert cos["status"] == "PASS" and abs(cos["value"] - 0.5) < 1e-9
    other = got["LeaP average accuracy - best other efficient mechanism's"]
    assert other["status"] == "MISS" and abs(other["value"] + 2.5) < 1e-9
    assert "linear" in other["shown"]
    soft = got["LeaP average accuracy - softmax's"]
    assert soft["status"] == "PASS" and abs(soft["value"] + 0.5) < 1e-9
    assert got["LeaP training throughput vs softmax at 4096"]["status"] == "PASS"
    assert got["LeaP training throughput vs ReLU linear at 4096"]["status"] == "MISS"
    assert evaluate_targets(results, _speed(0.9))[-1]["status"] == "PASS"
    report = render_report(results, _speed(0.9), command="leapformer lra-report --runs x")
    assert "`leapformer lra-report --runs x`" in report
    assert "| leap | 49.50 | 900 |" in report


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no results.json"):
        collect([tmp_path])
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.json").write_text("{broken")
    with pytest.raises(ValueError, match="could not read"):
        collect([tmp_path])
