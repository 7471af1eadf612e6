"""The resumable LRA grid runner."""

import json
import resource

import numpy as np
import pytest

from leapformer.cli import main
from leapformer.tasks.lra.grid import run_grid

TINY = {"n_train": 32, "n_valid": 8, "n_test": 8}


def test_grid_trains_skips_done_pairs_and_resumes_partial_ones(tmp_path):
    spike = np.ones(125_000_000)  # 1 GB: the process's peak, far above what a run needs
    del spike
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    said = []
    res = run_grid(["listops"], ["linear", "leap"], tmp_path, steps=2, overrides=TINY,
                   progress=False, announce=said.append)
    assert {(r["task"], r["attention"]) for r in res["runs"]} == {("listops", "linear"),
                                                                  ("listops", "leap")}
    report = (tmp_path / "report.md").read_text()
    assert "| leap |" in report and "- listops: " in report  # the table and its verdict
    assert "Targets" not in report and "MISS" not in report
    assert res["figure"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "grid.json").read_text())["mechanisms"] == ["linear", "leap"]
    first = json.loads((tmp_path / "listops-leap" / "results.json").read_text())
    for r in res["runs"]:  # each run's own peak, not the whole process's
        assert r["peak_rss_scope"] == "run" and 0 < r["peak_rss_mb"] < process_peak - 400
        assert r["test_correct"]["n"] == TINY["n_test"]
    (tmp_path / "listops-leap" / "results.json").unlink()  # as if interrupted after a checkpoint
    said.clear()
    run_grid(["listops"], ["linear", "leap"], tmp_path, steps=2, overrides=TINY,
             progress=False, announce=said.append)
    assert any("linear: done, skipped" in s for s in said)
    assert any("leap (resuming)" in s for s in said)
    again = json.loads((tmp_path / "listops-leap" / "results.json").read_text())
    assert again["steps"] == 2
    # resumed after its training ended: the original segment's throughput is kept
    assert first["train_steps_per_s"] > 0 and first["train_tokens_per_s"] > 0
    for key in ("train_steps_per_s", "train_tokens_per_s", "train_examples_per_s",
                "train_wall_s"):
        assert again[key] == pytest.approx(first[key])
    assert first["train_segments"] == again["train_segments"] == 1
    # starting afresh (overwrite) forgets the earlier run's training segments
    from leapformer.tasks.lra import run_lra

    fresh = run_lra("listops", "leap", out=tmp_path / "listops-leap", steps=2, overrides=TINY,
                    overwrite=True, progress=False)
    assert fresh["train_segments"] == 1 and fresh["train_steps_per_s"] > 0


def test_grid_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown tasks"):
        run_grid(["sudoku"], ["leap"], tmp_path)
    with pytest.raises(ValueError, match="unknown mechanisms"):
        run_grid(["listops"], ["magic"], tmp_path)
    assert main(["lra-grid", "--mechanisms", "leap", "--data-dir", "listops", "--out",
                 str(tmp_path)]) == 2
    assert "TASK=DIR" in capsys.readouterr().err


def test_a_run_saved_before_a_field_existed_is_skipped_and_resumed_not_refused(tmp_path):
    """A config.json written before a profile / model field existed (here pair_features)
    holds the same settings: its run used the field's default."""
    run_grid(["listops"], ["linear"], tmp_path, steps=2, overrides=TINY, progress=False)
    path = tmp_path / "listops-linear" / "config.json"
    saved = json.loads(path.read_text())
    del saved["settings"]["pair_features"], saved["model"]["pair_features"]
    path.write_text(json.dumps(saved))
    said = []
    run_grid(["listops"], ["linear"], tmp_path, steps=2, overrides=TINY, progress=False,
             announce=said.append)
    assert any("linear: done, skipped" in s for s in said)
    (tmp_path / "listops-linear" / "results.json").unlink()
    run_grid(["listops"], ["linear"], tmp_path, steps=2, overrides=TINY, progress=False,
             announce=said.append)
    assert any("linear (resuming)" in s for s in said)
    saved["settings"]["pair_features"] = "normalized"  # a real difference is still refused
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="settings.pair_features"):
        run_grid(["listops"], ["linear"], tmp_path, steps=2, overrides=TINY, progress=False)
