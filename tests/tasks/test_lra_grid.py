"""The resumable LRA grid runner."""

import json

import pytest

from leapformer.cli import main
from leapformer.tasks.lra.grid import run_grid

TINY = {"n_train": 32, "n_valid": 8, "n_test": 8}


def test_grid_trains_skips_done_pairs_and_resumes_partial_ones(tmp_path):
    said = []
    res = run_grid(["listops"], ["linear", "leap"], tmp_path, steps=2, overrides=TINY,
                   progress=False, announce=said.append)
    assert {(r["task"], r["attention"]) for r in res["runs"]} == {("listops", "linear"),
                                                                  ("listops", "leap")}
    assert "| leap |" in (tmp_path / "report.md").read_text()
    assert res["figure"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "grid.json").read_text())["mechanisms"] == ["linear", "leap"]
    (tmp_path / "listops-leap" / "results.json").unlink()  # as if interrupted after a checkpoint
    said.clear()
    run_grid(["listops"], ["linear", "leap"], tmp_path, steps=2, overrides=TINY,
             progress=False, announce=said.append)
    assert any("linear: done, skipped" in s for s in said)
    assert any("leap (resuming)" in s for s in said)
    assert json.loads((tmp_path / "listops-leap" / "results.json").read_text())["steps"] == 2


def test_grid_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown tasks"):
        run_grid(["sudoku"], ["leap"], tmp_path)
    with pytest.raises(ValueError, match="unknown mechanisms"):
        run_grid(["listops"], ["magic"], tmp_path)
    assert main(["lra-grid", "--mechanisms", "leap", "--data-dir", "listops", "--out",
                 str(tmp_path)]) == 2
    assert "TASK=DIR" in capsys.readouterr().err
