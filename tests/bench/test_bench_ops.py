"""The ops benchmark at tiny sizes: row schema, markdown, files, CLI parsing (no timing checks)."""

import json

import pytest

from leapformer.bench.ops import (
    MECHANISMS,
    ROW_KEYS,
    BenchConfig,
    evaluate_targets,
    flop_count,
    peak_memory_bytes,
    plan,
    render_markdown,
    run_ops_benchmark,
    write_results,
)
from leapformer.cli import main, parse_length

TINY = dict(lengths=(32, 64), positions=(8, 64), heads=2, head_dim=8, chunk_size=16,
            min_reps=1, max_reps=1, warmup=1)


@pytest.fixture(scope="module")
def result():
    return run_ops_benchmark(BenchConfig(**TINY))


def test_rows_have_documented_columns(result):
    assert len(result.rows) == len(plan(BenchConfig(**TINY))[1:]) * len(MECHANISMS)
    for row in result.rows:
        assert tuple(row) == ROW_KEYS
        assert row["ms"] > 0 and row["gflops"] > 0 and row["peak_mb"] >= 0
        assert row["flop"] == flop_count(row["mechanism"], row["scenario"], row["length"],
                                         heads=2, head_dim=8, chunk_size=16)
        if row["mechanism"] == "sdpa":
            assert row["vs_sdpa"] == 1.0
    assert result.matmul["gflops"] > 0
    assert {t["status"] for t in result.targets} == {"n/a"}  # no 4k/16k rows


def test_markdown_and_files(result, tmp_path):
    md = render_markdown(result)
    assert "## Targets" in md and "| 64 | leap |" in md and "## Recurrent decode step" in md
    md_path, json_path = write_results(result, tmp_path, stem="ops-test")
    assert md_path.read_text() == md
    data = json.loads(json_path.read_text())
    assert set(data) == {"machine", "config", "matmul", "rows", "targets"}
    assert data["rows"][0].keys() == set(ROW_KEYS)


def test_flop_definitions():
    D, C = 64, 64
    assert flop_count("sdpa", "fwd", 1024, batch=1, heads=1) == 4 * 1024 * 1024 * D
    assert flop_count("sdpa", "causal_fwd", 1024, heads=1) == 2 * 1024 * 1024 * D
    assert flop_count("sdpa", "decode", 4096, heads=1) == 4 * 4096 * D
    bi = 2 * 1024 * 2 * D * (D + 1) * 2
    assert flop_count("leap", "fwd", 1024, heads=1) == bi
    causal = bi + 2 * 1024 * C * 2 * D + 2 * 1024 * C * (D + 1)
    assert flop_count("cosformer", "causal_fwd", 1024, heads=1) == causal
    assert flop_count("cosformer", "causal_fwd_bwd", 1024, heads=1) == 3 * causal
    assert flop_count("linear_relu", "fwd", 1024, heads=8) == 8 * bi // 2


def test_sdpa_skipped_when_predicted_too_slow():
    res = run_ops_benchmark(BenchConfig(**{**TINY, "scenarios": ("fwd",), "max_sdpa_seconds": 0.0}))
    sdpa = {r["length"]: r for r in res.rows if r["mechanism"] == "sdpa"}
    assert sdpa[32]["ms"] is not None and sdpa[64]["ms"] is None
    assert sdpa[64]["note"].startswith("skipped")
    assert all(r["vs_sdpa"] is None for r in res.rows if r["length"] == 64)
    assert "| 64 | sdpa | - |" in render_markdown(res)


def test_targets_pass_and_miss():
    rows = [
        {"scenario": "fwd", "mechanism": "leap", "length": 4096, "vs_sdpa": 13.0, "gflops": 50.0},
        {"scenario": "fwd", "mechanism": "leap", "length": 16384, "vs_sdpa": 40.0},
        {"scenario": "causal_fwd_bwd", "mechanism": "leap", "length": 4096, "vs_sdpa": 3.5,
         "peak_mb": 10.0},
        {"scenario": "causal_fwd_bwd", "mechanism": "leap", "length": 16384, "peak_mb": 40.0},
        {"scenario": "decode", "mechanism": "leap", "length": 128, "ms": 1.0},
        {"scenario": "decode", "mechanism": "leap", "length": 16384, "ms": 1.5},
    ]
    status = [t["status"] for t in evaluate_targets(rows, {"gflops": 100.0})]
    assert status == ["PASS", "MISS", "PASS", "PASS", "MISS", "PASS"]


def test_peak_memory_sees_allocation():
    import torch

    peak = peak_memory_bytes(lambda: torch.empty(1_000_000).fill_(1.0))
    assert peak is None or peak >= 4_000_000


def test_cli(tmp_path, capsys):
    assert parse_length("4k") == 4096 and parse_length("100") == 100
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "leapformer" in capsys.readouterr().out
    code = main(["bench", "ops", "--quick", "--lengths", "32", "--positions", "8", "--reps", "1",
                 "--no-progress", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "# Ops benchmark (cpu)" in out and "| 32 | linear_elu |" in out
    assert (tmp_path / "ops-cpu-quick.md").exists() and (tmp_path / "ops-cpu-quick.json").exists()
    with pytest.raises(SystemExit):
        main(["bench", "ops", "--lengths", "abc"])
