"""The shared training loop: schedules, atomic checkpoints, exact resume, best selection."""

import json
import math

import pytest
import torch
from torch import nn

from leapformer.train import TrainConfig, Trainer, load_checkpoint, lr_lambda, save_checkpoint

X = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
Y = X @ torch.arange(1.0, 7.0) / 5 + 0.5


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))


def _batch(i, size=8):
    g = torch.Generator().manual_seed(1000 + i)
    idx = torch.randint(0, 64, (size,), generator=g)
    return X[idx], Y[idx]


def _loss(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x).squeeze(-1), y), {"examples": len(x)}


def _trainer(model, tmp, **kw):
    cfg = TrainConfig(**{"steps": 8, "lr": 1e-2, "log_every": 1, "checkpoint_every": 2,
                         "schedule": "cosine", "warmup_steps": 2, **kw})
    evaluate = (lambda m: {"loss": _loss(m, (X, Y))[0].item()})
    return Trainer(model, cfg, get_batch=_batch, loss_fn=_loss, evaluate=evaluate, out_dir=tmp,
                   progress=False)


def test_schedules():
    f = lr_lambda("cosine", warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(13) == pytest.approx(0.1) and f(8) == pytest.approx(0.1 + 0.9 * 0.5)
    g = lr_lambda("inverse_sqrt", warmup_steps=4, total_steps=100)
    assert g(15) == pytest.approx(math.sqrt(4 / 16))
    h = lr_lambda("linear", warmup_steps=0, total_steps=10)
    assert h(4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_lambda("step", warmup_steps=0, total_steps=10)


def test_loss_falls_and_files_are_written(tmp_path):
    res = _trainer(_model(), tmp_path, steps=60, eval_every=20, lr=3e-2).fit()
    evals = [r for r in res.history if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [20, 40, 60]
    assert evals[-1]["loss"] < 0.5 * evals[0]["loss"]
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, 61))
    assert res.examples_per_s > 0 and res.steps == 60
    assert load_checkpoint(tmp_path / "best.pt")["step"] == res.best["step"]


def test_resume_continues_exactly(tmp_path):
    straight = _model()
    _trainer(straight, tmp_path / "a").fit()

    class Interrupt(Exception):
        pass

    def failing(i):
        if i == 5:
            raise Interrupt
        return _batch(i)

    first = _trainer(_model(), tmp_path / "b")
    first.get_batch = failing
    with pytest.raises(Interrupt):
        first.fit()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 4
    resumed_model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    res = _trainer(resumed_model, tmp_path / "b").fit(resume=True)
    assert res.steps == 8
    for a, b in zip(straight.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, 9))


def test_best_checkpoint_follows_metric_and_mode(tmp_path):
    scores = iter([3.0, 1.0, 2.0, 0.5])
    cfg = TrainConfig(steps=4, eval_every=1, metric="acc", mode="max", log_every=1)
    tr = Trainer(_model(), cfg, get_batch=_batch, loss_fn=_loss,
                 evaluate=lambda m: {"acc": next(scores)}, out_dir=tmp_path, progress=False)
    res = tr.fit()
    assert res.best["step"] == 1 and res.best["acc"] == 3.0
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 1


def test_gradient_accumulation_equals_a_big_batch(tmp_path):
    def half(i):  # micro-batch i = half of big batch i // 2
        x, y = _batch(i // 2, size=8)
        sl = slice(0, 4) if i % 2 == 0 else slice(4, 8)
        return x[sl], y[sl]

    big, acc = _model().eval(), _model().eval()
    for m in (big, acc):
        m[2].p = 0.0
    cfg = dict(steps=5, lr=1e-2, grad_clip=None, log_every=1)
    Trainer(big, TrainConfig(**cfg), get_batch=_batch, loss_fn=_loss, progress=False).fit()
    Trainer(acc, TrainConfig(**cfg, grad_accum=2), get_batch=half, loss_fn=_loss,
            progress=False).fit()
    for a, b in zip(big.parameters(), acc.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_atomic_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)

    def broken(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(steps=1, optimizer="lamb")
    with pytest.raises(ValueError, match="steps and grad_accum must be positive"):
        TrainConfig(steps=0)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        _trainer(_model(), tmp_path).fit(resume=True)
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not read checkpoint"):
        _trainer(_model(), tmp_path).fit(resume=True)
    tr = Trainer(_model(), TrainConfig(steps=1), get_batch=_batch, loss_fn=_loss,
                 evaluate=lambda m: {"acc": 1.0}, progress=False)
    with pytest.raises(ValueError, match="missing the selection metric 'loss'"):
        tr.fit()
    nan = Trainer(_model(), TrainConfig(steps=1), get_batch=_batch,
                  loss_fn=lambda m, b: (torch.tensor(float("nan")), {}), progress=False)
    with pytest.raises(FloatingPointError, match="loss is nan at step 0"):
        nan.fit()


def _signalling(at: int, *signals):
    """``get_batch`` that sends ``signals`` to this process when micro-batch ``at`` is read."""
    import os

    def get(i):
        if i == at:
            for s in signals:
                os.kill(os.getpid(), s)
        return _batch(i)
    return get


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_finishes_the_step_saves_and_raises(tmp_path, sig):
    import signal

    from leapformer.train.loop import TrainingInterrupted

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    tr = _trainer(_model(), tmp_path, checkpoint_every=0, eval_every=0)
    tr.get_batch = _signalling(2, getattr(signal, sig))  # read by step 3
    with pytest.raises(TrainingInterrupted) as info:
        tr.fit()
    err = info.value
    assert (err.step, err.steps, err.checkpoint, err.signum) == (
        3, 8, tmp_path / "last.pt", getattr(signal, sig))
    assert isinstance(err, KeyboardInterrupt) and "saved" in str(err)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    resumed = _trainer(_model(), tmp_path, checkpoint_every=0, eval_every=0).fit(resume=True)
    assert resumed.steps == 8


def test_second_signal_stops_at_once(tmp_path):
    import signal

    from leapformer.train.loop import TrainingInterrupted

    tr = _trainer(_model(), tmp_path, checkpoint_every=0, eval_every=0)
    tr.get_batch = _signalling(2, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        tr.fit()
    assert not isinstance(info.value, TrainingInterrupted)
    assert not (tmp_path / "last.pt").exists()  # stopped inside step 3, before any save


def test_checkpoint_on_a_time_interval(tmp_path, monkeypatch):
    saved = []
    for seconds in (0.0, 1e-9):
        saved.clear()
        tr = _trainer(_model(), tmp_path / str(seconds), checkpoint_every=0, eval_every=0,
                      checkpoint_seconds=seconds)
        monkeypatch.setattr(tr, "_save", lambda name, tr=tr: saved.append((name, tr.step)))
        tr.fit()
        lasts = [s for n, s in saved if n == "last.pt"]
        assert lasts == ([8] if seconds == 0 else list(range(1, 9)))
    with pytest.raises(ValueError, match="checkpoint_seconds must be >= 0"):
        TrainConfig(steps=1, checkpoint_seconds=-1)


def test_resume_drops_later_and_cut_metrics_and_refuses_fewer_steps(tmp_path):
    _trainer(_model(), tmp_path, steps=4).fit()
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "kind": "train", "loss": 1.0}\n{"step": 6, "ki')
    _trainer(_model(), tmp_path, steps=6).fit(resume=True)
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert all(r.get("loss") != 1.0 for r in recs)
    with pytest.raises(ValueError, match="it is at step 6, beyond steps=5"):
        _trainer(_model(), tmp_path, steps=5).fit(resume=True)


def test_write_errors_name_the_checkpoint(tmp_path, monkeypatch):
    import errno
    import os

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"could not write checkpoint .*last.pt: No space left"):
        save_checkpoint({"step": 1}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"cut.pt: it is truncated or not a checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def test_resume_with_more_steps_follows_the_longer_schedule(tmp_path):
    """A finished cosine run (rate 0 at its end) resumed with more steps trains at the new
    schedule's rate from the first resumed step, not at the checkpoint's stale rate."""
    _trainer(_model(), tmp_path, steps=4, checkpoint_every=0).fit()
    tr = _trainer(_model(), tmp_path, steps=8)
    used = []
    batches = tr.get_batch

    def recording(i):
        used.append(tr.optimizer.param_groups[0]["lr"])
        return batches(i)

    tr.get_batch = recording
    tr.fit(resume=True)
    f = lr_lambda("cosine", warmup_steps=2, total_steps=8)
    assert used[0] == pytest.approx(1e-2 * f(4)) and used[0] > 0
    assert used == pytest.approx([1e-2 * f(s) for s in range(4, 8)])
