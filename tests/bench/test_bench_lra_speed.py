"""The LRA speed benchmark at tiny sizes: rows, ratios, targets, files, CLI (no timing checks)."""

import json

import pytest
import torch

from leapformer.bench.lra_speed import (
    ROW_KEYS,
    LRASpeedConfig,
    evaluate_targets,
    render_markdown,
    run_lra_speed,
    write_results,
)
from leapformer.cli import main

TINY = dict(length=32, batch=2, mechanisms=("softmax", "linear", "leap"), rounds=2, min_reps=1,
            max_reps=1, warmup=1, target_s=0.01)


@pytest.fixture(scope="module")
def result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_lra_speed(LRASpeedConfig(**TINY))
    finally:
        torch.set_num_threads(threads)


def test_rows_cover_every_mode_and_mechanism(result):
    rows = result["rows"]
    assert [(r["mode"], r["mechanism"]) for r in rows] == [
        (m, n) for m in ("train", "infer") for n in TINY["mechanisms"]]
    for r in rows:
        assert set(r) == set(ROW_KEYS) and r["error"] is None
        assert r["reps"] == 2  # one per round
        assert r["tokens_per_s"] == pytest.approx(2 * 32 / (r["ms"] / 1e3))
        assert r["peak_mb"] > 0
    by = {(r["mode"], r["mechanism"]): r for r in rows}
    for mode in ("train", "infer"):
        assert by[(mode, "softmax")]["vs_softmax"] == pytest.approx(1.0)
        assert by[(mode, "linear")]["vs_linear"] == pytest.approx(1.0)
        leap = by[(mode, "leap")]
        assert leap["vs_softmax"] == pytest.approx(
            leap["tokens_per_s"] / by[(mode, "softmax")]["tokens_per_s"])
    assert by[("train", "leap")]["parameters"] > by[("train", "linear")]["parameters"]


def test_targets_markdown_and_files(result, tmp_path):
    targets = evaluate_targets(result)
    assert [t["status"] in ("PASS", "MISS") for t in targets] == [True, True]
    md = render_markdown(result, "cmd")
    assert "| train | leap |" in md and "## Targets" in md and "`cmd`" in md
    md_path, js_path = write_results(result, tmp_path, "cmd", stem="s")
    assert md_path.read_text() == md
    data = json.loads(js_path.read_text())
    assert data["command"] == "cmd" and len(data["rows"]) == 6


def test_config_errors_and_cli(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown mechanisms"):
        LRASpeedConfig(mechanisms=("nope",))
    with pytest.raises(ValueError, match="modes"):
        LRASpeedConfig(mechanisms=("softmax",), modes=("backward",))
    assert main(["bench", "lra-speed", "--mechanisms", "nope", "--no-progress"]) == 2
    assert "unknown mechanisms" in capsys.readouterr().err
    assert main(["bench", "lra-speed", "--length", "16", "--batch", "1", "--rounds", "1",
                 "--mechanisms", "softmax", "linear", "--threads", "1", "--no-progress",
                 "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "lra-speed-cpu.md").exists() and (tmp_path / "lra-speed-cpu.json").exists()
