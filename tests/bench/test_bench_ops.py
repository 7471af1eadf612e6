"""The ops benchmark at tiny sizes: row schema, markdown, files, CLI parsing (no timing checks);
registry mechanism names, and old result files read with the names mapped."""

import json
from pathlib import Path

import pytest

from leapformer.bench import canonical_mechanism, canonical_result
from leapformer.bench.ops import (
    IMPLEMENTATIONS,
    MECHANISMS,
    ROW_KEYS,
    BenchConfig,
    BenchResult,
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
            min_reps=1, max_reps=1, warmup=1, peers=())


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
        assert row["impl"] == IMPLEMENTATIONS[row["mechanism"]]
        if row["mechanism"] == "softmax":
            assert row["vs_softmax"] == 1.0 and row["impl"] == "sdpa"
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
    assert flop_count("softmax", "fwd", 1024, batch=1, heads=1) == 4 * 1024 * 1024 * D
    assert flop_count("softmax", "causal_fwd", 1024, heads=1) == 2 * 1024 * 1024 * D
    assert flop_count("softmax", "decode", 4096, heads=1) == 4 * 4096 * D
    bi = 2 * 1024 * 2 * D * (D + 1) * 2
    assert flop_count("leap", "fwd", 1024, heads=1) == bi
    causal = bi + 2 * 1024 * C * 2 * D + 2 * 1024 * C * (D + 1)
    assert flop_count("cosformer", "causal_fwd", 1024, heads=1) == causal
    assert flop_count("cosformer", "causal_fwd_bwd", 1024, heads=1) == 3 * causal
    assert flop_count("linear", "fwd", 1024, heads=8) == 8 * bi // 2
    assert flop_count("elu", "fwd", 1024, heads=8) == 8 * bi // 2


def test_softmax_skipped_when_predicted_too_slow():
    res = run_ops_benchmark(BenchConfig(**{**TINY, "scenarios": ("fwd",), "max_sdpa_seconds": 0.0}))
    sdpa = {r["length"]: r for r in res.rows if r["mechanism"] == "softmax"}
    assert sdpa[32]["ms"] is not None and sdpa[64]["ms"] is None
    assert sdpa[64]["note"].startswith("skipped")
    assert all(r["vs_softmax"] is None for r in res.rows if r["length"] == 64)
    assert "| 64 | softmax | sdpa | - |" in render_markdown(res)


def test_targets_pass_and_miss():
    rows = [
        {"scenario": "fwd", "mechanism": "leap", "length": 4096, "vs_softmax": 13.0,
         "gflops": 50.0},
        {"scenario": "fwd", "mechanism": "leap", "length": 16384, "vs_softmax": 40.0},
        {"scenario": "causal_fwd_bwd", "mechanism": "leap", "length": 4096, "vs_softmax": 3.5,
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
    assert code == 0 and "# Ops benchmark (cpu)" in out and "| 32 | elu | linear_attention(elu) |" in out
    assert (tmp_path / "ops-cpu-quick.md").exists() and (tmp_path / "ops-cpu-quick.json").exists()
    with pytest.raises(SystemExit):
        main(["bench", "ops", "--lengths", "abc"])


def test_mechanisms_are_registry_names():
    from leapformer.nn import MECHANISMS as REGISTERED

    assert set(MECHANISMS) <= set(REGISTERED) and set(IMPLEMENTATIONS) == set(MECHANISMS)
    with pytest.raises(ValueError, match="unknown mechanism 'sdpa' \\(now 'softmax'\\)"):
        BenchConfig(mechanisms=("sdpa", "leap"))
    with pytest.raises(ValueError, match="unknown mechanism 'nope'"):
        BenchConfig(mechanisms=("nope",))


def _written_before_the_renaming(result: dict) -> dict:
    """A result in the format written before the registry names (sdpa, linear_relu,
    linear_elu, vs_sdpa, no impl), made from a current one."""
    names = {"softmax": "sdpa", "linear": "linear_relu", "elu": "linear_elu"}
    old = json.loads(json.dumps(result))
    for r in old["rows"]:
        r["mechanism"] = names.get(r["mechanism"], r["mechanism"])
        r["vs_sdpa"] = r.pop("vs_softmax")
        r.pop("impl", None)
    old["config"]["mechanisms"] = [names.get(m, m) for m in old["config"]["mechanisms"]]
    return old


def test_old_result_files_are_read_with_registry_names():
    path = Path(__file__).resolve().parents[2] / "docs" / "results" / "ops-cpu.json"
    old = _written_before_the_renaming(json.loads(path.read_text()))
    assert {"sdpa", "linear_relu", "linear_elu"} <= {r["mechanism"] for r in old["rows"]}
    new = canonical_result(old)
    from leapformer.bench.peers import PEERS

    assert {r["mechanism"] for r in new["rows"]} - set(PEERS) == set(MECHANISMS)
    assert new["config"]["mechanisms"] == ["softmax", "leap", "cosformer", "linear", "elu"]
    for a, b in zip(old["rows"], new["rows"]):
        assert "vs_sdpa" not in b and b["vs_softmax"] == a["vs_sdpa"] and b["ms"] == a["ms"]
        assert b.get("impl") == ("sdpa" if a["mechanism"] == "sdpa" else None)
    md = render_markdown(BenchResult(**new))
    assert "| 16k | softmax | sdpa |" in md and "| 1k | linear | - |" in md
    assert canonical_result(new) == new  # current names are kept
    assert canonical_mechanism("linear_relu") == "linear" and canonical_mechanism("leap") == "leap"
