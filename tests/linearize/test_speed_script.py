"""``benchmarks/linearize_speed.py`` end to end on a tiny Llama and its linearisation:
rows, cache sizes and files (not the times)."""

import importlib.util
import json
from pathlib import Path

import pytest

from leapformer.linearize import linearize, save_linearized

from ._tiny import tiny

pytestmark = pytest.mark.usefixtures("one_thread")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "linearize_speed.py"


def _script():
    spec = importlib.util.spec_from_file_location("linearize_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_cache_sizes_and_files(tmp_path, capsys):
    teacher = tiny("llama")
    teacher.save_pretrained(tmp_path / "teacher")
    save_linearized(linearize(tiny("llama"), mechanism="leap"), tmp_path / "lin")
    script = _script()
    assert script.main(["--teacher", str(tmp_path / "teacher"), "--linearized",
                        str(tmp_path / "lin"), "--positions", "8", "24", "--reps", "2",
                        "--warmup", "1", "--out-dir", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "linearize-speed-cpu.json").read_text())
    rows = {(r["position"], r["model"]): r for r in data["rows"]}
    assert set(rows) == {(p, m) for p in (8, 24) for m in ("teacher", "linearized")}
    assert all(r["ms"] > 0 and r["reps"] == 2 for r in rows.values())
    assert rows[(8, "teacher")]["vs_teacher"] == 1.0
    # measured right after the prefill: the teacher's keys and values grow with the
    # position (3x the tokens, 3x the bytes); the linear states do not
    t8, t24 = rows[(8, "teacher")]["cache_mb"], rows[(24, "teacher")]["cache_mb"]
    assert t24 / t8 == pytest.approx(3.0)
    assert rows[(8, "linearized")]["cache_mb"] == rows[(24, "linearized")]["cache_mb"] > 0
    md = (tmp_path / "out" / "linearize-speed-cpu.md").read_text()
    assert "| 24 | linearized |" in md and "vs teacher" in md
    assert script.main(["--teacher", str(tmp_path / "none"), "--linearized",
                        str(tmp_path / "lin")]) == 2
    assert "--teacher" in capsys.readouterr().err
    # GPT-2's learned position table must hold every timed position
    gpt2 = tiny("gpt2")
    gpt2.save_pretrained(tmp_path / "gpt2")
    save_linearized(linearize(tiny("gpt2"), mechanism="leap"), tmp_path / "gpt2-lin")
    rows = gpt2.config.n_positions
    assert script.main(["--teacher", str(tmp_path / "gpt2"), "--linearized",
                        str(tmp_path / "gpt2-lin"), "--positions", str(rows), "--reps", "1",
                        "--warmup", "1", "--out-dir", str(tmp_path / "o2")]) == 2
    assert "learned position table" in capsys.readouterr().err
