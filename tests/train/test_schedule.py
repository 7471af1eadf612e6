"""One-cycle and fairseq-cosine schedules through the Trainer; clipping by value; AdamW eps."""

import math

import pytest
import torch
from torch import nn

from leapformer.train import TrainConfig, Trainer, lr_lambda
from leapformer.train.schedule import make_scheduler

pytestmark = pytest.mark.usefixtures("one_thread")


def _toy():
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def _batch(i):
    g = torch.Generator().manual_seed(i)
    return torch.randn(4, 3, generator=g), torch.randn(4, generator=g)


def _recording_trainer(cfg, seen, out_dir=None, model=None, get_batch=_batch):
    """A Trainer whose loss_fn records the lr and beta1 the coming update uses."""
    trainer = None

    def loss_fn(m, batch):
        group = trainer.optimizer.param_groups[0]
        seen.append((group["lr"], group["betas"][0]))
        x, y = batch
        return nn.functional.mse_loss(m(x).squeeze(-1), y), {}

    trainer = Trainer(model or _toy(), cfg, get_batch=get_batch, loss_fn=loss_fn,
                      progress=False, out_dir=out_dir)
    return trainer


def test_onecycle_matches_torch_onecycle_lr_with_beta1_cycling():
    T, W, lr = 40, 6, 2e-3
    cfg = TrainConfig(steps=T, lr=lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0,
                      schedule="onecycle", warmup_steps=W, grad_clip=None, log_every=1)
    seen = []
    _recording_trainer(cfg, seen).fit()
    # the reference: torch's OneCycleLR as the official LRA harness builds it
    ref_opt = torch.optim.AdamW(_toy().parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-6,
                                weight_decay=0.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=lr, pct_start=W / T,
                                              anneal_strategy="linear", total_steps=T)
    expected = []
    for _ in range(T):
        g = ref_opt.param_groups[0]
        expected.append((g["lr"], g["betas"][0]))
        ref_opt.step()
        ref.step()
    assert len(seen) == T
    for (a_lr, a_b1), (e_lr, e_b1) in zip(seen, expected):
        assert a_lr == pytest.approx(e_lr, rel=1e-12) and a_b1 == pytest.approx(e_b1, rel=1e-12)
    # PyTorch's defaults: start lr/25, peak at the end of warm-up, end lr/25/1e4;
    # beta1 0.95 -> 0.85 at the peak -> 0.95
    assert seen[0] == (pytest.approx(lr / 25), pytest.approx(0.95))
    assert seen[W - 1] == (pytest.approx(lr), pytest.approx(0.85))
    assert seen[-1] == (pytest.approx(lr / 25 / 1e4), pytest.approx(0.95))
    lrs = [s[0] for s in seen]
    assert lrs[:W] == sorted(lrs[:W]) and lrs[W - 1:] == sorted(lrs[W - 1:], reverse=True)
    # halfway down the linear anneal
    mid = (W - 1 + T - 1) // 2
    frac = (mid - (W - 1)) / (T - 1 - (W - 1))
    assert seen[mid][0] == pytest.approx(lr + frac * (lr / 25 / 1e4 - lr))


def test_onecycle_resume_is_exact_and_warmup_longer_than_the_run_is_cut(tmp_path):
    cfg = TrainConfig(steps=12, lr=1e-2, schedule="onecycle", warmup_steps=4, grad_clip=None,
                      log_every=1, eval_every=0, checkpoint_every=5)
    straight, seen_a = _toy(), []
    _recording_trainer(cfg, seen_a, tmp_path / "a", straight).fit()
    part, seen_b = _toy(), []

    def interrupted(i):
        if i == 7:  # killed at step 8; last.pt holds step 5
            raise KeyboardInterrupt
        return _batch(i)

    with pytest.raises(KeyboardInterrupt):
        _recording_trainer(cfg, seen_b, tmp_path / "b", part, interrupted).fit()
    del seen_b[5:]
    _recording_trainer(cfg, seen_b, tmp_path / "b", part).fit(resume=True)
    assert seen_b == seen_a
    for p, q in zip(straight.parameters(), part.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    # more steps on resume stretch the cycle (PyTorch's own OneCycleLR would raise)
    grown = TrainConfig(**{**cfg.__dict__, "steps": 14})
    seen_c = []
    _recording_trainer(grown, seen_c, tmp_path / "b", part).fit(resume=True)
    assert len(seen_c) == 2 and all(0 < lr <= 1e-2 and 0.85 <= b1 <= 0.95 for lr, b1 in seen_c)
    # a 1000-step warm-up in a 2-step run (smoke tests) runs, with finite, positive rates
    seen = []
    res = _recording_trainer(TrainConfig(steps=2, lr=1e-3, schedule="onecycle",
                                         warmup_steps=1000, log_every=1), seen).fit()
    assert len(seen) == 2 and all(0 < s[0] <= 1e-3 for s in seen)
    last_lr = [r["lr"] for r in res.history if r["kind"] == "train"][-1]
    assert last_lr == pytest.approx(1e-3 / 25 / 1e4)  # held at the end, not extrapolated


def test_fairseq_cosine_values():
    # warm-up 10 from 1e-7 x peak; periods 20, 40, ... (t_mult 2); shrink 0.75; floor 0.1
    f = lr_lambda("fairseq_cosine", warmup_steps=10, total_steps=200, min_ratio=0.1,
                  options={"warmup_init": 1e-7, "period": 20, "t_mult": 2.0, "shrink": 0.75})
    assert f(0) == pytest.approx(1e-7)
    assert f(5) == pytest.approx(1e-7 + 0.5 * (1 - 1e-7))
    assert f(10) == pytest.approx(1.0)                      # start of the first period
    assert f(20) == pytest.approx(0.1 + 0.9 * 0.5)         # its middle: cos(pi/2) = 0
    assert f(30) == pytest.approx(0.75)                     # restart, shrunk once
    assert f(50) == pytest.approx(0.075 + 0.675 * 0.5)     # middle of the 40-step period
    assert f(70) == pytest.approx(0.75 ** 2)                # second restart
    # t_mult 1: equal periods; the default period is total - warm-up
    g = lr_lambda("fairseq_cosine", warmup_steps=0, total_steps=100, min_ratio=0.0)
    assert g(0) == 1.0 and g(50) == pytest.approx(0.5) and g(99) < 1e-3
    h = lr_lambda("fairseq_cosine", warmup_steps=0, total_steps=100,
                  options={"period": 10})
    assert h(10) == pytest.approx(1.0) and h(15) == pytest.approx(0.5)


def test_clip_by_value_and_by_norm():
    c = torch.tensor([5.0, -0.3, 2.0])

    def run(mode):
        model = nn.Linear(3, 1, bias=False)
        nn.init.zeros_(model.weight)
        cfg = TrainConfig(steps=1, lr=0.1, optimizer="nag", momentum=0.5, weight_decay=0.0,
                          grad_clip=1.0, grad_clip_mode=mode, log_every=1)
        Trainer(model, cfg, get_batch=lambda i: None, progress=False,
                loss_fn=lambda m, b: ((m.weight[0] * c).sum(), {})).fit()
        return model.weight.detach()[0]

    # first Nesterov step with a zero buffer: p -= lr * (1 + momentum) * g_clipped
    torch.testing.assert_close(run("value"), -0.1 * 1.5 * torch.tensor([1.0, -0.3, 1.0]))
    torch.testing.assert_close(run("norm"), -0.1 * 1.5 * c / c.norm())


def test_config_checks_and_adam_eps():
    model = _toy()
    cfg = TrainConfig(steps=3, eps=1e-6, betas=(0.9, 0.999))
    trainer = Trainer(model, cfg, get_batch=_batch, loss_fn=lambda m, b: (m.weight.sum(), {}),
                      progress=False)
    assert trainer.optimizer.defaults["eps"] == 1e-6
    assert TrainConfig(steps=3).eps == 1e-8  # AdamW's default: lite runs unchanged
    with pytest.raises(ValueError, match="grad_clip_mode must be"):
        TrainConfig(steps=3, grad_clip_mode="max")
    with pytest.raises(ValueError, match="do not apply to schedule 'cosine'"):
        TrainConfig(steps=3, schedule="cosine", schedule_options={"period": 3})
    with pytest.raises(ValueError, match="anneal_strategy"):
        TrainConfig(steps=3, schedule="onecycle", schedule_options={"anneal_strategy": "exp"})
    with pytest.raises(ValueError, match="not a multiplier"):
        lr_lambda("onecycle", warmup_steps=0, total_steps=3)
    opt = torch.optim.SGD(_toy().parameters(), lr=1.0, momentum=0.9)
    sched = make_scheduler(opt, "onecycle", warmup_steps=2, total_steps=10,
                           options={"cycle_momentum": False})
    assert opt.param_groups[0]["momentum"] == 0.9 and math.isclose(sched.get_last_lr()[0], 0.04)
