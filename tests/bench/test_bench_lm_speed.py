"""The LM speed benchmark at tiny sizes: rows, ratios, targets, files, CLI (no timing checks)."""

import json

import pytest
import torch

from leapformer.bench.lm_speed import (
    ROW_KEYS,
    LMSpeedConfig,
    evaluate_targets,
    render_markdown,
    run_lm_speed,
    write_results,
)
from leapformer.cli import main

SMALL = {"num_layers": 1, "d_model": 16, "nhead": 2, "dim_feedforward": 32}
TINY = {"vocab_size": 50, "mechanisms": ("softmax", "linear", "cosformer", "leap"),
            "contexts": (8, 32), "tokens_per_step": 64, "positions": (5, 40), "prefill_chunk": 16,
            "rounds": 2, "min_reps": 1, "max_reps": 1, "warmup": 1, "target_s": 0.01, "model_overrides": SMALL,
        "compile_step": False}


@pytest.fixture(scope="module")
def result():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_lm_speed(LMSpeedConfig(**TINY))
    finally:
        torch.set_num_threads(threads)


def test_rows(result):
    rows = result["rows"]
    mechs = TINY["mechanisms"]
    assert [(r["mode"], r["context"] or r["position"], r["mechanism"]) for r in rows] == [
        ("train", c, m) for c in (8, 32) for m in mechs] + [
        ("generate", p, m) for p in (5, 40) for m in mechs]
    for r in rows:
        assert set(r) == set(ROW_KEYS) and r["error"] is None, r
        assert r["reps"] == 2  # one per round
        assert r["step"] == (None if r["mode"] == "train" else "eager")
        assert r["vs_softmax"] > 0
    by = {(r["mode"], r["context"] or r["position"], r["mechanism"]): r for r in rows}
    for c, batch in ((8, 8), (32, 2)):  # equal tokens per step
        r = by[("train", c, "leap")]
        assert r["batch"] == batch and r["peak_mb"] > 0
        assert r["tokens_per_s"] == pytest.approx(batch * c / (r["ms"] / 1e3))
        assert by[("train", c, "softmax")]["vs_softmax"] == pytest.approx(1.0)
        assert r["parameters"] > by[("train", c, "linear")]["parameters"]
    # the softmax KV cache grows with the position, the linear states do not
    assert by[("generate", 40, "softmax")]["cache_mb"] > by[("generate", 5, "softmax")]["cache_mb"]
    for m in ("linear", "leap"):
        assert by[("generate", 40, m)]["cache_mb"] == by[("generate", 5, m)]["cache_mb"]


def test_generation_times_the_compiled_step_of_generate():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_lm_speed(LMSpeedConfig(**{**TINY, "modes": ("generate",), "positions": (6,),
                                            "mechanisms": ("leap", "cosformer"),
                                            "compile_step": True}))
    finally:
        torch.set_num_threads(threads)
    steps = {r["mechanism"]: r["step"] for r in res["rows"]}
    assert steps == {"leap": "compiled", "cosformer": "eager"}  # cosFormer is not covered
    assert all(r["error"] is None and r["vs_softmax"] is None for r in res["rows"])
    assert "| 6 | leap |" in render_markdown(res, "cmd") and "| compiled |" in \
        render_markdown(res, "cmd")


def test_targets_markdown_and_files(result, tmp_path):
    # the tiny run measures none of the issue's sizes: every target is n/a
    assert [t["status"] for t in evaluate_targets(result)] == ["n/a"] * 4
    md = render_markdown(result, "cmd")
    assert "## Training" in md and "## Generation" in md and "| 40 | leap |" in md
    md_path, js_path = write_results(result, tmp_path, "cmd", stem="s")
    assert md_path.read_text() == md
    data = json.loads(js_path.read_text())
    assert data["command"] == "cmd" and len(data["rows"]) == 16


def test_config_errors_and_cli(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown mechanisms"):
        LMSpeedConfig(mechanisms=("nope",))
    with pytest.raises(ValueError, match="contexts must be in"):
        LMSpeedConfig(contexts=(4096,), tokens_per_step=1024)
    assert main(["lm", "bench", "--mechanisms", "nope", "--no-progress"]) == 2
    assert "unknown mechanisms" in capsys.readouterr().err
    argv = ["lm", "bench", "--quick", "--contexts", "8", "--tokens-per-step", "16",
            "--positions", "4", "--mechanisms", "softmax", "leap", "--threads", "1",
            "--no-progress", "--out-dir", str(tmp_path)]
    for kv in ("num_layers=1", "d_model=16", "nhead=2", "dim_feedforward=32"):
        argv += ["--model-option", kv]
    assert main(argv) == 0
    assert (tmp_path / "lm-speed-cpu-quick.md").exists()
    data = json.loads((tmp_path / "lm-speed-cpu-quick.json").read_text())
    assert len(data["rows"]) == 4 and data["config"]["model_overrides"]["d_model"] == 16


def test_targets_at_the_issue_sizes():
    def row(mode, mech, n, vs, ms=None):
        return {"mode": mode, "mechanism": mech, "context": n if mode == "train" else None,
                "position": n if mode == "generate" else None, "vs_softmax": vs, "ms": ms,
                "error": None}

    rows = [row("train", "leap", 2048, 2.5), row("generate", "leap", 128, 0.9, ms=10.0),
            row("generate", "leap", 4096, 1.5, ms=11.0), row("generate", "leap", 16384, 9.0, ms=13.0)]
    got = {t["name"]: t for t in evaluate_targets({"rows": rows})}
    assert got["LeaP training tokens/s vs softmax at context 2k"]["status"] == "PASS"
    assert got["LeaP generation speed vs softmax at position 4k"]["status"] == "MISS"
    assert got["LeaP generation speed vs softmax at position 16k"]["status"] == "PASS"
    flat = got["LeaP ms/token at position 16k / at 128"]
    assert flat["status"] == "MISS" and flat["value"] == pytest.approx(1.3)
