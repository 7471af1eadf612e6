"""Data-parallel training under torchrun: batch sharding, a 2-process LRA run whose
checkpoints resume in a single process and back, and a 2-process LM run that trains
the weights of one process."""

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

import leapformer
from leapformer.train import distributed as ddp


@pytest.mark.parametrize("n", [1, 7, 8, 32, 33])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_are_disjoint_and_cover_the_global_batch(n, world):
    if n < world:
        return
    ids = torch.arange(n)
    batch = ((ids, ids + 100), {"labels": ids * 2, "name": "listops"}, [ids.view(n, 1)])
    shards = [ddp.shard_batch(batch, r, world) for r in range(world)]
    got = torch.cat([s[0][0] for s in shards])
    assert got.tolist() == list(range(n))  # disjoint, in order, covering every example
    sizes = [len(s[0][0]) for s in shards]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n
    for s in shards:  # every tensor of the structure cut alike, other leaves kept
        assert torch.equal(s[0][1], s[0][0] + 100) and torch.equal(s[1]["labels"], s[0][0] * 2)
        assert s[1]["name"] == "listops" and s[2][0].view(-1).tolist() == s[0][0].tolist()
    assert [ddp.shard_bounds(n, r, world) for r in range(world)] == [
        (int(c[0]), int(c[-1]) + 1) for c in torch.tensor_split(ids, world)]


def test_shard_errors_and_identity():
    x = torch.zeros(4)
    assert ddp.shard_batch(x, 0, 1) is x
    with pytest.raises(ValueError, match="one size along dimension 0"):
        ddp.shard_batch((torch.zeros(4), torch.zeros(5)), 0, 2)
    with pytest.raises(ValueError, match="outside world"):
        ddp.shard_bounds(4, 2, 2)


def test_single_process_creates_no_process_group(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = ddp.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.enabled) == (0, 1, True, False)
    assert not (dist.is_available() and dist.is_initialized())
    model = nn.Linear(2, 2)
    assert ddp.wrap_model(model, info) is model and ddp.unwrap_model(model) is model
    assert ddp.all_reduce_sum([3, 1.5], info) == [3, 1.5]
    assert ddp.all_reduce_mean(2.0, info) == 2.0 and ddp.broadcast_object({"a": 1}, info) == {"a": 1}
    ddp.barrier(info)
    ddp.cleanup()  # nothing to leave
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert not ddp.init_distributed("cpu").enabled  # torchrun with one process: no group


X = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
Y = X @ torch.arange(1.0, 7.0) / 5


def _toy_batch(i, size=8):
    idx = torch.randint(0, 64, (size,), generator=torch.Generator().manual_seed(100 + i))
    return X[idx], Y[idx]


def _toy_loss(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x).squeeze(-1), y), {"examples": len(x)}


def _toy_fit(info, out_dir):
    from leapformer.train import TrainConfig, Trainer

    torch.manual_seed(0)  # no dropout: one process and two must train the same weights
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    cfg = TrainConfig(steps=6, lr=3e-2, grad_accum=2, log_every=1, eval_every=3)
    res = Trainer(model, cfg, get_batch=_toy_batch, loss_fn=_toy_loss, out_dir=out_dir,
                  evaluate=lambda m: {"loss": _toy_loss(m, (X, Y))[0].item()}, progress=False,
                  dist=info).fit()
    return model, res


def _toy_worker(rank, world, store, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        _toy_fit(ddp.DistInfo(rank=rank, world_size=world), out_dir)
    finally:
        dist.destroy_process_group()


def test_two_ranks_train_the_weights_of_one_process(tmp_path):
    """DDP over shards of each global batch (with accumulation) == one process on the batch."""
    import torch.multiprocessing as mp

    one, res1 = _toy_fit(ddp.DistInfo(), tmp_path / "one")
    ctx = mp.spawn(_toy_worker, args=(2, str(tmp_path / "store"), str(tmp_path / "two")),
                   nprocs=2, join=False)
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("2-process training did not finish in 180 s")
    ck = torch.load(tmp_path / "two" / "last.pt", map_location="cpu", weights_only=False)
    for name, value in one.state_dict().items():
        torch.testing.assert_close(ck["model"][name], value, rtol=1e-5, atol=1e-6)
    lines = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, 7))
    for a, b in zip(lines, res1.history, strict=True):  # losses reduced over ranks
        assert a["kind"] == b["kind"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def _torchrun(args, tmp_path, nproc=2):
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    src = str(Path(leapformer.__file__).resolve().parents[1])
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [src, *filter(None, [env.get("PYTHONPATH")])]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", str(nproc), "-m", "leapformer.cli", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, time.perf_counter() - t0


def _metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_process_lra_run_resumes_in_one_process_and_back(tmp_path, monkeypatch, capsys):
    from leapformer.cli import main
    from leapformer.data import generate_listops, write_tsv
    from leapformer.models import ClassifierConfig, SequenceClassifier
    from leapformer.tasks.lra import evaluate, get_profile, load_splits

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "data"
    for i, name in enumerate(("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")):
        write_tsv(generate_listops(40, seed=i, min_len=5, max_len=25), data / name)
    out = tmp_path / "run"
    lra = ["lra", "--task", "listops", "--attention", "leap", "--data-dir", str(data),
           "--out", str(out), "--no-progress"]

    # 2 processes, fresh: global batch 32 = 2 x 16
    proc, wall = _torchrun([*lra, "--steps", "4"], tmp_path)
    print(f"2-process run: {wall:.1f} s")
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 4 and res["world_size"] == 2
    assert [(r["step"], r["kind"]) for r in _metrics(out)] == [
        (1, "train"), (2, "train"), (3, "train"), (4, "train"), (4, "eval")]
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert ck["step"] == 4 and ck["world_size"] == 2 and len(ck["rng_ranks"]) == 2
    assert not any(k.startswith("module.") for k in ck["model"])
    # the test accuracy summed over ranks is that of one process evaluating best.pt
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    model = SequenceClassifier(ClassifierConfig(**best["meta"]["model"]))
    model.load_state_dict(best["model"])
    p = get_profile("listops", "lite")
    test = evaluate(model, load_splits("listops", p, data, 0).splits["test"], p.batch_size,
                    p.max_length)
    assert res["test_accuracy"] == pytest.approx(test["accuracy"], abs=1.5 / 40)
    assert res["test_loss"] == pytest.approx(test["loss"], rel=1e-4)

    # 1 process resumes the 2-process checkpoint
    assert main([*lra, "--steps", "6", "--resume"]) == 0
    capsys.readouterr()
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 6 and res["world_size"] == 1
    assert "rng_ranks" not in torch.load(out / "last.pt", map_location="cpu", weights_only=False)

    # and 2 processes resume the 1-process checkpoint
    _torchrun([*lra, "--steps", "8", "--resume"], tmp_path)
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 8 and res["world_size"] == 2
    steps = [r["step"] for r in _metrics(out) if r["kind"] == "train"]
    assert steps == list(range(1, 9))


def test_two_process_lm_run_trains_the_weights_of_one_process(tmp_path, monkeypatch, capsys):
    """``lm train`` under torchrun (2 x half of each global batch) == one process, no dropout."""
    from leapformer.cli import main

    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    words = ["in", "the", "beginning", "god", "created", "the", "heavens", "and", "the", "earth"]
    data = tmp_path / "wikitext"
    data.mkdir()
    for split, n in (("train", 60), ("valid", 8), ("test", 8)):
        lines = [" " + " ".join(words[(i + j) % len(words)] for j in range(9)) + " "
                 for i in range(n)]
        (data / f"wiki.{split}.tokens").write_text("\n".join(lines) + "\n")
    args = ["lm", "train", "--attention", "leap", "--data", str(data), "--steps", "4",
            "--context", "16", "--batch-size", "4", "--lr", "3e-3", "--warmup-steps", "0",
            "--eval-every", "2", "--device", "cpu", "--no-progress",
            *[x for kv in ("num_layers=1", "d_model=32", "nhead=2", "dim_feedforward=64",
                           "dropout=0.0") for x in ("--model-option", kv)]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    proc, _ = _torchrun([*args, "--out", str(tmp_path / "two")], tmp_path)
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    res = json.loads((tmp_path / "two" / "results.json").read_text())
    assert res["world_size"] == 2 and res["steps"] == 4
    one = torch.load(tmp_path / "one" / "last.pt", map_location="cpu", weights_only=False)
    two = torch.load(tmp_path / "two" / "last.pt", map_location="cpu", weights_only=False)
    assert one["model"].keys() == two["model"].keys()
    for name, value in one["model"].items():
        torch.testing.assert_close(two["model"][name], value, rtol=1e-4, atol=1e-6)
    m1, m2 = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [(r["step"], r["kind"]) for r in m1] == [(r["step"], r["kind"]) for r in m2]
    for a, b in zip(m1, m2):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
