"""The decode benchmark at tiny sizes: row schema, caches, markdown, files, targets, CLI
parsing (no timing checks)."""

import json

import pytest
import torch

from leapformer.bench.decode import (
    MECHANISMS,
    ROW_KEYS,
    DecodeConfig,
    build_decoders,
    cache_at,
    evaluate_targets,
    plan,
    render_markdown,
    rewind,
    run_decode_benchmark,
    write_results,
)
from leapformer.cli import build_parser, main

TINY = dict(positions=(8, 32), batches=(1, 2), layers=2, d_model=32, heads=4, dim_feedforward=64,
            min_reps=1, max_reps=1, warmup=1, rounds=2, compile_step=False)


@pytest.fixture(scope="module")
def result():
    # one thread: tiny steps on a shared 2-core machine otherwise stall at thread barriers
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_decode_benchmark(DecodeConfig(**TINY))
    finally:
        torch.set_num_threads(threads)


def test_rows_have_documented_columns(result):
    cfg = DecodeConfig(**TINY)
    order = [(1, 8), (1, 32), (2, 8), (2, 32)]
    assert plan(cfg) == order + order[::-1]  # every other round reversed
    assert plan(DecodeConfig(**{**TINY, "rounds": 3})) == order + order[::-1] + order
    assert len(result.rows) == len(order) * (len(MECHANISMS) + 1)  # + the floor
    assert [r["mechanism"] for r in result.rows[:5]] == [*MECHANISMS, "floor"]
    for row in result.rows:
        assert tuple(row) == ROW_KEYS
        assert row["ms"] > 0 and row["reps"] == 2  # 1 rep x 2 rounds
        assert row["note"] == ("eager" if row["mechanism"] == "floor" else "")
        assert len(row["round_ms"]) == 2
        assert min(row["round_ms"]) <= row["ms"] <= max(row["round_ms"])
        assert row["tokens_per_s"] == pytest.approx(1e3 * row["batch"] / row["ms"])
        if row["mechanism"] == "softmax":
            assert row["vs_softmax"] == 1.0
    mb = {(r["batch"], r["position"], r["mechanism"]): r["cache_mb"] for r in result.rows}
    # softmax: K and V [B, H, p + 64, D] per layer; linear: constant [B, H, groups, F, P]
    assert mb[1, 8, "softmax"] == pytest.approx(2 * 2 * (8 + 64) * 32 * 4 / 1e6)
    assert mb[2, 32, "softmax"] == pytest.approx(2 * mb[1, 32, "softmax"])
    for mech in ("linear", "cosformer", "leap"):
        assert mb[1, 8, mech] == mb[1, 32, mech] > 0
    assert mb[1, 8, "floor"] == mb[2, 32, "floor"] == 0.0  # no state
    assert mb[1, 8, "leap"] == 2 * mb[1, 8, "linear"]  # sin and cos halves
    assert result.elapsed_s > 0 and result.config["layers"] == 2


def test_cache_at_position():
    cfg = DecodeConfig(**{**TINY, "mechanisms": ("softmax", "leap")})
    decoders = build_decoders(cfg)
    for mech, dec in decoders.items():
        assert not dec.training and len(dec.layers) == 2
        cache = cache_at(dec, mech, 2, 8, torch.Generator().manual_seed(0))
        assert cache.length == 8
        if mech == "leap":
            assert all((lc.self_attn.tensors["s"] >= 0).all() for lc in cache.layers)
        with torch.no_grad():
            y = dec(torch.randn(2, 1, 32), cache=cache)
        assert y.shape == (2, 1, 32) and torch.isfinite(y).all() and cache.length == 9
        rewind(cache, 8)
        assert all(lc.self_attn.length == lc.self_attn.queries == 8 for lc in cache.layers)
    # seeded weights, the global RNG untouched
    state = torch.random.get_rng_state()
    again = build_decoders(cfg)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(again["leap"].layers[0].ffn.linear1.weight,
                       decoders["leap"].layers[0].ffn.linear1.weight)


def test_markdown_and_files(result, tmp_path):
    md = render_markdown(result)
    assert "## Targets" in md and "## Batch 1" in md and "## Batch 2" in md
    assert "| 32 | leap |" in md and "| 8 | softmax |" in md
    md_path, json_path = write_results(result, tmp_path, stem="decode-test")
    assert md_path.read_text() == md
    data = json.loads(json_path.read_text())
    assert set(data) == {"machine", "config", "rows", "targets", "elapsed_s"}
    assert data["rows"][0].keys() == set(ROW_KEYS)
    assert data["config"]["positions"] == [8, 32]


def test_targets_on_tiny_run(result):
    status = {t["name"]: t["status"] for t in result.targets}
    assert len(status) == 18
    floor = next(t for t in result.targets if "the floor" in t["name"])
    assert floor["status"] != "n/a" and floor["value"] > 0  # measured at 8 and 32
    flat = [t for t in result.targets if "max/min" in t["name"]]
    assert [t["status"] != "n/a" for t in flat] == [True, True, False, False]  # batch 1: 8-32
    assert all(t["status"] == "n/a" for t in result.targets if "16k" in t["name"] or "128" in
               t["name"])


def _rows(ms: dict) -> list[dict]:
    """Rows from ``{(batch, position): {mechanism: ms}}`` with ratios vs softmax."""
    rows = []
    for (batch, position), group in ms.items():
        for mech, t in group.items():
            rows.append({"batch": batch, "position": position, "mechanism": mech, "ms": t,
                         "vs_softmax": group["softmax"] / t})
    return rows


def test_targets_pass_and_miss():
    good = {(1, 128): dict(softmax=10.0, linear=9.0, cosformer=9.5, leap=9.9, floor=8.2),
            (1, 16384): dict(softmax=50.0, linear=10.0, cosformer=10.0, leap=10.5, floor=8.5),
            (8, 128): dict(softmax=20.0, linear=19.0, cosformer=19.0, leap=19.0),
            (8, 16384): dict(softmax=300.0, linear=21.0, cosformer=22.0, leap=22.5)}
    targets = evaluate_targets(_rows(good))
    assert [t["status"] for t in targets] == ["PASS"] * 18
    assert targets[-1]["name"] == "LeaP step / the floor (no attention), batch 1, worst position"
    assert targets[-1]["shown"] == "1.24 (at 16k)"  # 10.5 / 8.5 > 9.9 / 8.2
    assert targets[-2]["shown"] == "1.10 (at 128)"  # LeaP / ReLU linear: 9.9 / 9
    assert targets[1]["shown"] == "1.11 (linear)"  # the worst spread at batch 1: 10 / 9
    assert targets[0]["name"] == "LeaP step time max/min over positions 128-16k, batch 1"

    bad = {(1, 128): dict(softmax=10.0, linear=11.0, cosformer=9.0, leap=9.0, floor=5.0),
           (1, 16384): dict(softmax=50.0, linear=11.0, cosformer=14.0, leap=10.0, floor=5.0),
           (8, 128): dict(softmax=20.0, linear=19.0, cosformer=19.0, leap=25.0),
           (8, 16384): dict(softmax=300.0, linear=20.0, cosformer=24.0, leap=26.0)}
    got = {t["name"]: (t["status"], t["value"]) for t in evaluate_targets(_rows(bad))}
    assert got["LeaP step time max/min over positions 128-16k, batch 1"][0] == "PASS"
    assert got["Worst linear mechanism, step time max/min over positions 128-16k, batch 1"] == \
        ("MISS", pytest.approx(14.0 / 9.0))
    assert got["linear vs softmax at position 16k, batch 1"][0] == "PASS"  # 4.5x
    assert got["cosformer vs softmax at position 16k, batch 1"][0] == "MISS"  # 3.6x
    assert got["leap vs softmax at position 16k, batch 8"][0] == "MISS"  # 11.5x
    assert got["cosformer vs softmax at position 16k, batch 8"][0] == "PASS"  # 12.5x
    assert got["linear vs softmax at position 128, batch 1"][0] == "MISS"
    assert got["leap vs softmax at position 128, batch 8"][0] == "MISS"
    assert got["linear vs softmax at position 128, batch 8"][0] == "PASS"
    assert got["LeaP step / the floor (no attention), batch 1, worst position"] == \
        ("MISS", pytest.approx(2.0))
    assert got["LeaP step / ReLU linear's step, batch 1, worst position"] == \
        ("PASS", pytest.approx(10.0 / 11.0))


def test_targets_without_rows():
    assert {t["status"] for t in evaluate_targets([])} == {"n/a"}


def test_config_validation():
    with pytest.raises(ValueError, match="positions"):
        DecodeConfig(positions=(0, 8))
    with pytest.raises(ValueError, match="multiple of heads"):
        DecodeConfig(d_model=30, heads=4)
    with pytest.raises(ValueError, match="rounds"):
        DecodeConfig(rounds=0)
    with pytest.raises(ValueError, match="distinct"):
        DecodeConfig(mechanisms=("leap", "leap"))
    quick = DecodeConfig.quick()
    assert quick.positions == (128, 1024) and quick.batches == (1,) and quick.rounds == 1
    assert DecodeConfig().positions == (128, 1024, 4096, 16384)
    assert DecodeConfig().batches == (1, 8) and DecodeConfig().rounds == 6


def test_cli_parsing(capsys):
    args = build_parser().parse_args(["bench", "decode", "--quick", "--positions", "128", "1k",
                                      "--batches", "1", "8", "--mechanisms", "softmax", "leap",
                                      "--reps", "3", "--threads", "1", "--rounds", "2",
                                      "--no-progress"])
    assert args.positions == [128, 1024] and args.batches == [1, 8]
    assert args.mechanisms == ["softmax", "leap"] and args.reps == 3 and args.threads == 1
    assert args.rounds == 2
    assert args.quick and args.no_progress and args.out_dir is None
    for bad in (["--batches", "0"], ["--positions", "x"], ["--reps", "-1"], ["--rounds", "0"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", "decode", *bad])
    assert main(["bench", "decode", "--mechanisms", "softmax", "nope", "--no-progress"]) == 2
    assert "unknown attention mechanism 'nope'" in capsys.readouterr().err


def test_cli_run(tmp_path, capsys, monkeypatch):
    # the tiny model sizes are not CLI options: shrink the defaults of the quick preset
    import leapformer.bench.decode as decode

    real = decode.DecodeConfig.quick
    monkeypatch.setattr(decode.DecodeConfig, "quick", classmethod(
        lambda cls, **kw: real(**{**kw, "layers": 1, "d_model": 16, "heads": 2,
                                  "dim_feedforward": 32, "compile_step": False})))
    code = main(["bench", "decode", "--quick", "--positions", "8", "--reps", "1",
                 "--no-progress", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "# Decode benchmark (cpu)" in out and "| 8 | cosformer |" in out
    assert (tmp_path / "decode-cpu-quick.md").exists()
    assert (tmp_path / "decode-cpu-quick.json").exists()


def test_compiled_step_rows():
    """With ``compile_step`` (the default) the covered mechanisms run the compiled step,
    cosFormer the eager modules; the note says which."""
    assert DecodeConfig().compile_step
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = DecodeConfig(**{**TINY, "positions": (8,), "batches": (1,), "rounds": 1,
                              "mechanisms": ("leap", "cosformer"), "compile_step": True})
        res = run_decode_benchmark(cfg)
    finally:
        torch.set_num_threads(threads)
    notes = {r["mechanism"]: r["note"] for r in res.rows}
    assert notes == {"leap": "compiled", "cosformer": "eager", "floor": "compiled"}
    assert "compiled fused step" in render_markdown(res)


def test_floor_is_the_stack_without_attention():
    """The floor equals the decoder's step with every attention output replaced by v."""
    from leapformer.bench.decode_floor import floor_step

    cfg = DecodeConfig(**{**TINY, "mechanisms": ("leap",)})
    dec = build_decoders(cfg)["leap"]
    step, how = floor_step(dec, compile=False)
    assert how == "eager"
    x = torch.randn(2, 1, 32)
    mhas = [layer.self_attn for layer in dec.layers]
    # the same stack, attention patched to return out_proj(v): an independent reference
    originals = [m.forward for m in mhas]
    try:
        for m in mhas:
            def values(h, *args, m=m, **kwargs):
                v = torch.nn.functional.linear(h, *m.projection_weights()[2])
                return m.out_proj(v), None
            m.forward = values
        with torch.no_grad():
            want = dec(x)
    finally:
        for m, f in zip(mhas, originals):
            m.forward = f
    with torch.no_grad():
        torch.testing.assert_close(step(x), want)
    with pytest.raises(ValueError, match="cross-attention"):
        from leapformer.nn import BlockConfig, Decoder
        floor_step(Decoder(1, BlockConfig(d_model=8, nhead=2, dim_feedforward=16), "leap",
                           cross=True))
