"""Peer rows (other libraries' linear attention) and the contended mode of the ops benchmark."""

import sys
import types

import pytest
import torch

from leapformer.bench.contention import contention
from leapformer.bench.ops import BenchConfig, render_markdown, run_ops_benchmark
from leapformer.bench.peers import (
    EPS,
    available_peers,
    check_peers,
    peer_attention,
    peer_skip_reason,
)
from leapformer.ops import linear_attention

TINY = dict(lengths=(32, 64), heads=2, head_dim=8, chunk_size=16, min_reps=1, max_reps=1,
            warmup=1)


def _ours(q, k, v):
    return linear_attention(q, k, v, feature_map="elu", causal=True, normalize="eps", eps=EPS)


@pytest.mark.parametrize("shape", [(1, 1, 64, 4), (2, 3, 128, 8), (1, 2, 192, 16)])
def test_fla_naive_equals_our_elu_linear_attention_values_and_gradients(shape):
    assert "fla-naive" in available_peers()
    g = torch.Generator().manual_seed(sum(shape))
    q, k, v = (torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    theirs = peer_attention("fla-naive", q, k, v)
    grads = torch.autograd.grad(theirs.pow(2).sum(), (q, k, v))
    ours = _ours(q, k, v)
    torch.testing.assert_close(theirs, ours)
    for a, b in zip(grads, torch.autograd.grad(ours.pow(2).sum(), (q, k, v))):
        torch.testing.assert_close(a, b)


def test_fast_transformers_glue_with_a_reference_kernel(monkeypatch):
    """The normalisation around fast-transformers' numerator kernel, with a stand-in kernel
    (the real one is not installable here) that computes the documented causal product."""
    def causal_dot_product(q, k, v):  # sum_{j<=i} (q_i . k_j) v_j
        return torch.einsum("bhid,bhjd,bhje,ij->bhie", q, k, v,
                            torch.ones(q.shape[2], q.shape[2], dtype=q.dtype).tril())
    pkg = types.ModuleType("fast_transformers")
    mod = types.ModuleType("fast_transformers.causal_product")
    mod.causal_dot_product = causal_dot_product
    monkeypatch.setitem(sys.modules, "fast_transformers", pkg)
    monkeypatch.setitem(sys.modules, "fast_transformers.causal_product", mod)
    assert "fast-transformers" in available_peers()
    q, k, v = (torch.randn(2, 2, 9, 4, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(peer_attention("fast-transformers", q, k, v), _ours(q, k, v))


def test_missing_and_bad_peers_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "fast_transformers", None)  # import fails
    assert "fast-transformers" not in available_peers()
    assert peer_skip_reason("fast-transformers", 64) == "not installed"
    assert peer_skip_reason("fla-naive", 96) == "length not a multiple of 64"
    with pytest.raises(ValueError, match="unknown peer 'flash'"):
        check_peers(["flash"])
    with pytest.raises(ValueError, match="unknown peer"):
        BenchConfig(peers=("flash",))
    with pytest.raises(RuntimeError, match="not installed"):
        peer_attention("fast-transformers", *(torch.randn(1, 1, 4, 2) for _ in range(3)))


def test_peer_rows_in_the_causal_scenarios_only():
    result = run_ops_benchmark(BenchConfig(**TINY, scenarios=("fwd", "causal_fwd_bwd"),
                                           peers=("fla-naive",)))
    rows = {(r["scenario"], r["mechanism"], r["length"]): r for r in result.rows}
    assert not any(s == "fwd" and m == "fla-naive" for s, m, _ in rows)
    assert rows[("causal_fwd_bwd", "fla-naive", 64)]["ms"] > 0
    short = rows[("causal_fwd_bwd", "fla-naive", 32)]
    assert short["ms"] is None and short["note"] == "length not a multiple of 64"
    assert "| 64 | fla-naive |" in render_markdown(result)
    assert any("fla-naive" in t["name"] for t in result.targets)


def test_contended_run_adds_the_one_thread_row_and_its_targets():
    threads = torch.get_num_threads()
    result = run_ops_benchmark(BenchConfig(**TINY, scenarios=("fwd",), peers=(), contended=1))
    assert torch.get_num_threads() == threads  # the 1-thread row restores the setting
    one = [r for r in result.rows if r["mechanism"] == "leap-1thread"]
    assert [r["length"] for r in one] == [32, 64] and all(r["ms"] > 0 for r in one)
    names = [t["name"] for t in result.targets]
    assert any("busy process" in n for n in names) and any("1 thread" in n for n in names)
    assert "- contended: 1 other torch process(es) running matmul" in render_markdown(result)
    assert "OMP_WAIT_POLICY" in render_markdown(result)


def test_contention_processes_start_and_stop():
    with contention(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=-1), "contended must be"), (dict(n=1, work="sleep"), "work must be one of"),
    (dict(n=1, threads=0), "threads must be")])
def test_contention_arguments_are_checked(kwargs, match):
    n = kwargs.pop("n")
    with pytest.raises(ValueError, match=match):
        with contention(n, **kwargs):
            pass


def test_cli_peers_scenarios_and_contended_file_names(tmp_path, capsys):
    from leapformer.cli import main

    code = main(["bench", "ops", "--quick", "--lengths", "64", "--scenarios", "causal_fwd",
                 "--peers", "fla-naive", "--reps", "1", "--no-progress", "--out-dir",
                 str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "| 64 | fla-naive |" in out and "## Forward, bidirectional" not in out
    assert (tmp_path / "ops-cpu-quick.md").is_file()
    code = main(["bench", "ops", "--quick", "--lengths", "32", "--scenarios", "fwd", "--peers",
                 "--contended", "1", "--reps", "1", "--no-progress", "--out-dir", str(tmp_path)])
    assert code == 0 and (tmp_path / "ops-cpu-quick-contended1.json").is_file()
    assert "fla-naive" not in capsys.readouterr().out
    for bad, said in ((["--contended", "-1"], "must be >= 0"),
                      (["--peers", "flash"], "invalid choice: 'flash'")):
        with pytest.raises(SystemExit):
            main(["bench", "ops", "--quick", *bad])
        assert said in capsys.readouterr().err
