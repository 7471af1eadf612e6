"""The LRA report table."""

import json

import pytest

from leapformer.cli import main
from leapformer.tasks.lra_report import collect, render_table


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
    assert out.read_text() == table


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no results.json"):
        collect([tmp_path])
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.json").write_text("{broken")
    with pytest.raises(ValueError, match="could not read"):
        collect([tmp_path])
