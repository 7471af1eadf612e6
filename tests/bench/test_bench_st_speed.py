"""The SimulST speed benchmark's method: rows per spec, duration and encoder mode, the
same tokens for every spec, the computation-aware AL at or above AL, the baseline
ratio, bad inputs, and the table."""

import pytest

from leapformer.bench import machine_info
from leapformer.bench.st_speed import build_model, measure, render_markdown

SPECS = {"softmax": "enc=softmax,dec=softmax,cross=softmax", "leap": "leap"}


@pytest.mark.usefixtures("one_thread")
def test_rows_compare_like_with_like():
    calls = []
    rows = measure(SPECS, [0.8, 1.6], encoders=("incremental", "reencode"), k=2, ratio=2,
                   reps=1, progress=calls.append)
    assert len(rows) == 2 * 2 * 2 and len(calls) == 4
    for i in range(0, len(rows), 2):
        soft, leap = rows[i], rows[i + 1]
        assert (soft["spec"], leap["spec"]) == ("softmax", "leap")
        assert soft["audio_s"] == leap["audio_s"] and soft["encoder"] == leap["encoder"]
        assert soft["tokens"] == leap["tokens"] > 0  # the policy's writes, the same for both
        assert soft["AL"] == leap["AL"]  # no compute in AL: equal delays
        assert soft["AL_CA_vs_baseline"] == 1.0
        for r in (soft, leap):
            assert r["AL_CA"] >= r["AL"] and r["compute_lag_ms"] >= 0
            assert r["encoder_ms_per_s"] > 0 and r["decoder_ms_per_step"] > 0
            assert r["compile_step"] and r["compiled"]  # the warm-up compiled the step
    longer = [r for r in rows if r["audio_s"] == 1.6 and r["spec"] == "leap"]
    shorter = [r for r in rows if r["audio_s"] == 0.8 and r["spec"] == "leap"]
    assert longer[0]["tokens"] > shorter[0]["tokens"]
    text = render_markdown(rows, machine_info(), command="python benchmarks/st_speed.py",
                           load="quiet")
    assert text.count("\n| leap | 2 |") == 4 and "baseline: softmax" in text
    assert "the compiled fused step" in text and text.count(" | yes |") == 8
    eager = measure(SPECS, [0.8], k=2, ratio=2, reps=1, compile_step=False)
    assert not any(r["compiled"] or r["compile_step"] for r in eager)


def test_bad_inputs():
    with pytest.raises(ValueError, match="preset"):
        build_model("leap", preset="huge")
    with pytest.raises(ValueError, match="at least one spec"):
        measure({}, [1.0])
    with pytest.raises(ValueError, match="reps"):
        measure(SPECS, [1.0], reps=0)
    with pytest.raises(ValueError, match=r"durations must be positive seconds, got \[-1\.0\]"):
        measure(SPECS, [1.0, -1.0])
    with pytest.raises(ValueError, match="rows is empty"):
        render_markdown([], machine_info(), command="", load="")
