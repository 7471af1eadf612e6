"""The TTS speed benchmark's method: rows per frames-per-step, duration and spec, the
forced frame counts, the baseline ratio, the compiled step, bad inputs, and the table."""

import pytest

from leapformer.bench import machine_info
from leapformer.bench.tts_speed import build_tts, measure, render_markdown
from leapformer.models.tts import frames_for_seconds

SPECS = {"softmax": "softmax", "leap": "leap", "cosformer": "cosformer"}


@pytest.mark.usefixtures("one_thread")
def test_rows_time_the_forced_frames():
    calls = []
    rows = measure(SPECS, [0.1, 0.2], frames_per_step=(1, 3), reps=1, preset="tiny",
                   progress=calls.append)
    assert len(rows) == 2 * 2 * 3 and len(calls) == 4
    for i in range(0, len(rows), 3):
        group = rows[i:i + 3]
        assert [r["spec"] for r in group] == list(SPECS)
        assert len({(r["seconds"], r["frames_per_step"], r["symbols"]) for r in group}) == 1
        assert group[0]["speedup_vs_baseline"] == 1.0
        for r in group:
            assert r["frames"] == frames_for_seconds(r["seconds"])
            assert r["decode_s"] > 0 and r["rtf"] == pytest.approx(r["decode_s"] / r["seconds"])
            assert r["compiled"] == (r["spec"] != "cosformer")  # cosFormer: eager
    assert rows[0]["symbols"] < rows[3]["symbols"]  # the text grows with the audio
    text = render_markdown(rows, machine_info(), command="python benchmarks/tts_speed.py",
                           load="quiet")
    assert text.count("\n| leap |") == 4 and "baseline: softmax" in text
    assert "the compiled fused step" in text
    eager = measure({"leap": "leap"}, [0.1], reps=1, preset="tiny", compile_step=False)
    assert not eager[0]["compiled"] and "the eager modules" in render_markdown(
        eager, machine_info(), command="", load="")


def test_bad_inputs():
    with pytest.raises(ValueError, match="preset"):
        build_tts("leap", preset="huge")
    with pytest.raises(ValueError, match="at least one spec"):
        measure({}, [1.0])
    with pytest.raises(ValueError, match="reps"):
        measure(SPECS, [1.0], reps=0)
    with pytest.raises(ValueError, match=r"seconds must be positive, got \[0\.0\]"):
        measure(SPECS, [1.0, 0.0])
    with pytest.raises(ValueError, match="frames_per_step"):
        measure(SPECS, [1.0], frames_per_step=(0,))
    with pytest.raises(ValueError, match="rows is empty"):
        render_markdown([], machine_info(), command="", load="")


def test_write_table(tmp_path):
    import json

    from leapformer.bench import load_line, write_table
    info = machine_info()
    rows = [{"spec": "leap", "decode_s": 1.5}]
    text = write_table(tmp_path / "out", "t-cpu", rows, info, command="c", load=load_line(),
                       markdown="# t\n")
    assert text == "# t\n" and (tmp_path / "out" / "t-cpu.md").read_text() == "# t\n"
    saved = json.loads((tmp_path / "out" / "t-cpu.json").read_text())
    assert saved["rows"] == rows and saved["command"] == "c" and saved["machine"] == info
    assert saved["load"].startswith("load average before the run ")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t-cpu.json", "t-cpu.md"]
