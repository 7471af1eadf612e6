"""LRA speed benchmark: training and inference throughput and peak memory of the
LRA classifier at 4k tokens for every mechanism (the x axis and bubble size of
the LeaPformer paper's Figure 1).

Model: :class:`~leapformer.models.SequenceClassifier` with the LRA configuration
(docs/math.md §5.1: 2 layers, width 64, FFN 128, 2 heads, learned positions, mean
pooling; dropout 0.1 in training), byte vocabulary (257), 2 classes, each
mechanism with its LRA options (``lra_mechanism_options``). Inputs: random
tokens ``[batch, length]`` without padding, seeded.

- ``train``: one optimisation step (forward, cross-entropy, backward, AdamW).
- ``infer``: one forward pass in ``eval()`` mode under ``torch.inference_mode``.

Timing (``leapformer.bench._common.time_interleaved``): per mode, the
mechanisms are warmed up, then timed round-robin in the same process;
``rounds`` such passes are pooled and the median reported. ``tokens_per_s`` =
batch x length / median seconds; ``vs_softmax`` = that throughput over
softmax's (> 1 = faster). ``peak_mb``: the peak bytes allocated during one
call above those allocated before it (``peak_memory_bytes``: CUDA allocator
statistics, or on CPU the torch profiler's allocation events), weights and
optimizer state excluded. Mechanisms whose measurement fails (e.g. out of
memory) get a row with the error.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from leapformer.bench._common import (
    machine_info,
    peak_memory_bytes,
    time_interleaved,
)
from leapformer.report.tables import (
    fmt,
    fmt_len,
    machine_line,
    target,
    targets_table,
    write_files,
)

logger = logging.getLogger(__name__)

MECHANISMS = ("softmax", "linear", "elu", "cosformer", "leap", "performer", "nystromformer",
              "linformer", "skyformer", "reformer", "bigbird", "informer")
MODES = ("train", "infer")
BASELINE = "softmax"
ROW_KEYS = ("mode", "mechanism", "ms", "tokens_per_s", "vs_softmax", "vs_linear", "peak_mb",
            "parameters", "reps", "error")


@dataclasses.dataclass
class LRASpeedConfig:
    length: int = 4096
    batch: int = 4
    mechanisms: tuple[str, ...] = MECHANISMS
    modes: tuple[str, ...] = MODES
    rounds: int = 3
    min_reps: int = 2
    max_reps: int = 20
    target_s: float = 2.0
    warmup: int = 2
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self):
        from leapformer.nn import MECHANISMS as REGISTERED

        if self.length < 1 or self.batch < 1 or self.rounds < 1:
            raise ValueError(f"length, batch and rounds must be positive, got {self.length}, "
                             f"{self.batch}, {self.rounds}")
        unknown = [m for m in self.mechanisms if m not in REGISTERED]
        if unknown:
            raise ValueError(f"unknown mechanisms {unknown}; known: {sorted(REGISTERED)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ValueError(f"modes must be among {MODES}, got {bad}")


def build_model(mechanism: str, length: int, device: torch.device, seed: int = 0):
    from leapformer.models import ClassifierConfig, SequenceClassifier
    from leapformer.models.classifier import lra_mechanism_options

    torch.manual_seed(seed)
    cfg = ClassifierConfig(vocab_size=257, num_classes=2, max_length=length,
                           attention=mechanism,
                           mechanism_options=lra_mechanism_options(mechanism, length))
    return SequenceClassifier(cfg).to(device)


def _step_fns(mechanism: str, cfg: LRASpeedConfig, device: torch.device):
    model = build_model(mechanism, cfg.length, device, cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    tokens = torch.randint(1, 257, (cfg.batch, cfg.length), generator=g).to(device)
    labels = torch.randint(0, 2, (cfg.batch,), generator=g).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train():
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(tokens), labels).backward()
        opt.step()

    def infer():
        model.eval()
        with torch.inference_mode():
            model(tokens)

    params = sum(p.numel() for p in model.parameters())
    return {"train": train, "infer": infer}, params


def run_lra_speed(cfg: LRASpeedConfig, progress=None) -> dict:
    """Measure every (mode, mechanism); returns ``{"machine", "config", "rows"}``."""
    device = torch.device(cfg.device)
    fns, params, errors = {}, {}, {}
    for mech in cfg.mechanisms:
        try:
            fns[mech], params[mech] = _step_fns(mech, cfg, device)
        except (RuntimeError, ValueError) as err:  # e.g. a mechanism that cannot take the length
            errors[mech] = f"{type(err).__name__}: {err}"
    rows = []
    for mode in cfg.modes:
        samples: dict[str, list[float]] = {m: [] for m in fns}
        peaks: dict[str, int | None] = {}
        failed = dict(errors)
        live = {}
        for mech in fns:  # one checked call first: memory, and a failure leaves a row
            try:
                peaks[mech] = peak_memory_bytes(fns[mech][mode], device)
                live[mech] = fns[mech][mode]
            except RuntimeError as err:
                failed[mech] = f"{type(err).__name__}: {str(err)[:200]}"
            gc.collect()
        for r in range(cfg.rounds):
            order = dict(reversed(live.items())) if r % 2 else live
            got = time_interleaved(order, device=device, warmup=cfg.warmup if r == 0 else 1,
                                   min_reps=cfg.min_reps, max_reps=cfg.max_reps,
                                   target_s=cfg.target_s)
            for m, ts in got.items():
                samples[m] += ts
            if progress is not None:
                progress(f"{mode} round {r + 1}/{cfg.rounds}")
        tps = {m: cfg.batch * cfg.length / statistics.median(ts) for m, ts in samples.items() if ts}
        for mech in cfg.mechanisms:
            if mech in failed:
                rows.append({k: None for k in ROW_KEYS} | {"mode": mode, "mechanism": mech,
                                                            "error": failed[mech]})
                continue
            t = statistics.median(samples[mech])
            peak = peaks.get(mech)
            rows.append({
                "mode": mode, "mechanism": mech, "ms": 1e3 * t, "tokens_per_s": tps[mech],
                "vs_softmax": tps[mech] / tps[BASELINE] if BASELINE in tps else None,
                "vs_linear": tps[mech] / tps["linear"] if "linear" in tps else None,
                "peak_mb": None if peak is None else peak / 1e6, "parameters": params[mech],
                "reps": len(samples[mech]), "error": None,
            })
    return {"machine": machine_info(device), "config": dataclasses.asdict(cfg), "rows": rows}


def evaluate_targets(result: dict) -> list[dict]:
    """LeaP training throughput at 4k: >= 3x softmax, within 1.25x of ReLU linear."""
    row = {(r["mode"], r["mechanism"]): r for r in result["rows"]}
    leap = row.get(("train", "leap"), {})
    n = fmt_len(result["config"]["length"])
    return [
        target(f"LeaP training throughput vs softmax at {n}", ">= 3x", leap.get("vs_softmax"),
               lambda v: v >= 3.0, "{:.2f}x"),
        target(f"LeaP training throughput vs ReLU linear at {n}", ">= 0.8x (within 1.25x)",
               leap.get("vs_linear"), lambda v: v >= 0.8, "{:.2f}x"),
    ]


def render_markdown(result: dict, command: str) -> str:
    cfg = result["config"]
    lines = [
        f"# LRA speed at {fmt_len(cfg['length'])} tokens ({result['machine']['device']})", "",
        machine_line(result["machine"]),
        f"- date: {result['machine']['date']}",
        f"- command: `{command}`",
        f"- model: LRA classifier (2 layers, width 64, FFN 128, 2 heads), batch {cfg['batch']}, "
        f"length {cfg['length']}; medians of {cfg['rounds']} interleaved rounds "
        "(method: `leapformer.bench.lra_speed`)", "",
        "| mode | mechanism | ms / step | tokens/s | vs softmax | vs linear | peak MB | parameters |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if r["error"]:
            lines.append(f"| {r['mode']} | {r['mechanism']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['mode']} | {r['mechanism']} | {fmt(r['ms'])} | {r['tokens_per_s']:.0f} "
                     f"| {fmt(r['vs_softmax'])} | {fmt(r['vs_linear'])} | {fmt(r['peak_mb'])} "
                     f"| {r['parameters']} |")
    lines += ["", *targets_table(evaluate_targets(result)), ""]
    return "\n".join(lines)


def write_results(result: dict, out_dir: str | Path, command: str, stem: str) -> tuple[Path, Path]:
    data = dict(result, targets=evaluate_targets(result), command=command)
    return write_files(render_markdown(result, command), data, out_dir, stem)
