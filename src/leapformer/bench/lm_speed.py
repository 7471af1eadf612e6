"""LM speed benchmark: training throughput and memory, and generation latency, of the
causal LM (:class:`~leapformer.models.CausalLM`, ``small`` preset: 4 layers, width
256, 4 heads, FFN 1024; vocabulary 8192 like the Bible BPE) per mechanism.

- ``train``: one optimisation step (forward, next-token cross-entropy, backward,
  AdamW) on random tokens ``[batch, context]``, dropout on, for every context;
  the batch is ``tokens_per_step // context``, so every context trains on the
  same number of tokens per step. ``tokens_per_s`` = batch x context / median
  seconds; ``peak_mb`` = peak bytes allocated during one step above those
  allocated before it (``peak_memory_bytes``: CUDA allocator statistics, or
  the CPU profiler's allocation events), weights and optimizer state excluded.
- ``generate``: one decoding step (one token, batch 1, through all layers and
  the output projection) at position ``p``: the cache is first prefilled with
  ``p`` random tokens through the model's own decoding path (``prefill_chunk``
  tokens per call; for softmax this builds the KV cache, for the linear
  mechanisms the running sums), then every timed step decodes token ``p + 1``:
  before each one (untimed) the cache is rewound to ``p`` tokens
  (:func:`leapformer.bench.decode.rewind`), so every repetition does the same
  work. ``cache_mb`` = the cache's bytes at ``p``. cosFormer gets
  ``target_length = p + 100`` (it needs one; the value does not change the work).
  The step is the one :func:`~leapformer.models.generate` runs: the compiled
  whole-stack step (:func:`~leapformer.models.lm_step`, compiled before timing)
  where it covers the mechanism (``step`` = ``compiled``; cosFormer and the gated
  mechanisms run ``eager``), or with ``compile_step=False`` the eager modules.

Timing (``leapformer.bench._common.time_interleaved``): per group (a context, or
a position), the mechanisms are warmed up and timed round-robin in the same
process; ``rounds`` passes (every other one in reverse order) are pooled and
the median reported; ``vs_softmax`` = softmax's time over the mechanism's
(> 1 = faster) within the group. A mechanism whose measurement fails (e.g. out
of memory) gets a row with the error.
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

MECHANISMS = ("softmax", "linear", "cosformer", "leap")
MODES = ("train", "generate")
BASELINE = "softmax"
COSFORMER_MARGIN = 100
ROW_KEYS = ("mode", "mechanism", "context", "batch", "position", "ms", "tokens_per_s",
            "vs_softmax", "peak_mb", "cache_mb", "parameters", "reps", "step", "error")


@dataclasses.dataclass
class LMSpeedConfig:
    preset: str = "small"
    vocab_size: int = 8192
    mechanisms: tuple[str, ...] = MECHANISMS
    contexts: tuple[int, ...] = (512, 2048)
    tokens_per_step: int = 8192
    positions: tuple[int, ...] = (128, 4096, 16384)
    prefill_chunk: int = 512
    modes: tuple[str, ...] = MODES
    rounds: int = 3
    min_reps: int = 2
    max_reps: int = 20
    target_s: float = 2.0
    warmup: int = 2
    device: str = "cpu"
    seed: int = 0
    compile_step: bool = True  # generation: the compiled step of generate (False: eager)
    model_overrides: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> LMSpeedConfig:
        """A smoke run (a few minutes on a busy 2-core CPU): contexts 128/512, 1024
        tokens per step, positions 128/1k, one round, at most 3 repetitions."""
        base = {"contexts": (128, 512), "tokens_per_step": 1024, "positions": (128, 1024),
                "rounds": 1, "max_reps": 3, "target_s": 0.3, "warmup": 1}
        return cls(**{**base, **overrides})

    def __post_init__(self):
        from leapformer.models import LM_PRESETS
        from leapformer.nn import MECHANISMS as REGISTERED

        if self.preset not in LM_PRESETS:
            raise ValueError(f"preset must be one of {sorted(LM_PRESETS)}, got {self.preset!r}")
        unknown = [m for m in self.mechanisms if m not in REGISTERED]
        if unknown:
            raise ValueError(f"unknown mechanisms {unknown}; known: {sorted(REGISTERED)}")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ValueError(f"modes must be among {MODES}, got {bad}")
        for name in ("vocab_size", "tokens_per_step", "prefill_chunk", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        small = [c for c in self.contexts if not 1 <= c <= self.tokens_per_step]
        if small or not self.contexts:
            raise ValueError(f"contexts must be in [1, tokens_per_step={self.tokens_per_step}], "
                             f"got {list(self.contexts)}")
        if any(p < 1 for p in self.positions):
            raise ValueError(f"positions must be positive, got {list(self.positions)}")
        self.contexts, self.positions = tuple(self.contexts), tuple(self.positions)
        self.mechanisms, self.modes = tuple(self.mechanisms), tuple(self.modes)


def build_model(cfg: LMSpeedConfig, mechanism: str, context: int, device: torch.device):
    from leapformer.models import CausalLM, LMConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        lm_cfg = LMConfig.preset(cfg.preset, cfg.vocab_size, attention=mechanism,
                                 **{"context_length": context, **cfg.model_overrides})
        return CausalLM(lm_cfg).to(device)


def _train_fn(cfg: LMSpeedConfig, mechanism: str, context: int, device: torch.device):
    model = build_model(cfg, mechanism, context, device).train()
    batch = max(1, cfg.tokens_per_step // context)
    g = torch.Generator().manual_seed(cfg.seed)
    tokens = torch.randint(3, cfg.vocab_size, (batch, context + 1), generator=g).to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    V = cfg.vocab_size

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(inputs)
        F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)).backward()
        opt.step()

    return step, batch, sum(p.numel() for p in model.parameters())


def _generate_fn(cfg: LMSpeedConfig, mechanism: str, position: int, device: torch.device):
    """(step, setup, cache, fused) at ``position`` for one model (prefilled through its
    cache); ``fused`` is the compiled step, or None for the eager modules."""
    from leapformer.bench.decode import rewind
    from leapformer.models import lm_step

    model = build_model(cfg, mechanism, max(cfg.contexts), device).eval()
    length = position + COSFORMER_MARGIN if mechanism == "cosformer" else None
    g = torch.Generator().manual_seed(cfg.seed + position)
    prompt = torch.randint(3, cfg.vocab_size, (1, position), generator=g).to(device)
    nxt = torch.randint(3, cfg.vocab_size, (1, 1), generator=g).to(device)
    with torch.inference_mode():
        cache = model.new_cache(1, max_length=position + 64 if mechanism == BASELINE else None)
        for a in range(0, position, cfg.prefill_chunk):
            model.hidden_states(prompt[:, a:a + cfg.prefill_chunk], target_length=length,
                                cache=cache)

    def setup():
        with torch.inference_mode():
            rewind(cache.decoder, position)
            cache.lengths.fill_(position)

    fused = lm_step(model, compile_after=0) if cfg.compile_step else None
    where = torch.full((1, 1), position + 1, dtype=torch.long, device=device)

    def step():
        with torch.inference_mode():
            if fused is None:
                model(nxt, target_length=length, cache=cache)
            else:
                fused(nxt, cache.decoder, where, owner=model, target_length=length)

    if fused is not None:  # compile now, so that the timed warm-up sees the step's own time
        for _ in range(2):
            setup()
            step()
    return step, setup, cache, fused


def _error_row(mode: str, mech: str, err: str, **where) -> dict:
    return {k: None for k in ROW_KEYS} | {"mode": mode, "mechanism": mech, "error": err, **where}


def _time_group(cfg, device, fns: dict, setups: dict | None = None) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {m: [] for m in fns}
    for r in range(cfg.rounds):
        order = dict(reversed(list(fns.items()))) if r % 2 else fns
        got = time_interleaved(order, device=device, warmup=cfg.warmup if r == 0 else 1,
                               min_reps=cfg.min_reps, max_reps=cfg.max_reps,
                               target_s=cfg.target_s, setup=setups)
        for m, ts in got.items():
            samples[m] += ts
    return samples


def run_lm_speed(cfg: LMSpeedConfig, progress=None) -> dict:
    """Measure every (mode, group, mechanism); returns ``{"machine", "config", "rows"}``."""
    device = torch.device(cfg.device)
    rows: list[dict] = []

    def note(msg):
        logger.info("lm-speed: %s", msg)
        if progress is not None:
            progress(msg)

    if "train" in cfg.modes:
        for context in cfg.contexts:
            fns, meta, failed = {}, {}, {}
            for mech in cfg.mechanisms:
                try:
                    fn, batch, params = _train_fn(cfg, mech, context, device)
                    peak = peak_memory_bytes(fn, device)
                    fns[mech], meta[mech] = fn, (batch, params, peak)
                except (RuntimeError, ValueError) as err:
                    failed[mech] = f"{type(err).__name__}: {str(err)[:200]}"
                gc.collect()
            samples = _time_group(cfg, device, fns)
            base = statistics.median(samples[BASELINE]) if samples.get(BASELINE) else None
            for mech in cfg.mechanisms:
                if mech in failed:
                    rows.append(_error_row("train", mech, failed[mech], context=context))
                    continue
                batch, params, peak = meta[mech]
                t = statistics.median(samples[mech])
                rows.append({k: None for k in ROW_KEYS} | {
                    "mode": "train", "mechanism": mech, "context": context, "batch": batch,
                    "ms": 1e3 * t, "tokens_per_s": batch * context / t,
                    "vs_softmax": None if base is None else base / t,
                    "peak_mb": None if peak is None else peak / 1e6, "parameters": params,
                    "reps": len(samples[mech]), "error": None})
            del fns
            gc.collect()
            note(f"train context {context}")
    if "generate" in cfg.modes:
        for position in cfg.positions:
            fns, setups, caches, fused, failed = {}, {}, {}, {}, {}
            for mech in cfg.mechanisms:
                try:
                    fns[mech], setups[mech], caches[mech], fused[mech] = _generate_fn(
                        cfg, mech, position, device)
                except (RuntimeError, ValueError) as err:
                    failed[mech] = f"{type(err).__name__}: {str(err)[:200]}"
                gc.collect()
            samples = _time_group(cfg, device, fns, setups)
            base = statistics.median(samples[BASELINE]) if samples.get(BASELINE) else None
            for mech in cfg.mechanisms:
                if mech in failed:
                    rows.append(_error_row("generate", mech, failed[mech], position=position))
                    continue
                t = statistics.median(samples[mech])
                rows.append({k: None for k in ROW_KEYS} | {
                    "mode": "generate", "mechanism": mech, "position": position, "batch": 1,
                    "ms": 1e3 * t, "tokens_per_s": 1 / t,
                    "vs_softmax": None if base is None else base / t,
                    "cache_mb": caches[mech].nbytes / 1e6, "reps": len(samples[mech]),
                    "step": "compiled" if fused[mech] is not None and fused[mech].compiled
                    else "eager", "error": None})
            del fns, setups, caches, fused
            gc.collect()
            note(f"generate position {position}")
    return {"machine": machine_info(device), "config": dataclasses.asdict(cfg), "rows": rows}


def evaluate_targets(result: dict) -> list[dict]:
    """Issue #5's speed targets, at the contexts and positions measured: LeaP
    training tokens/s at context 2k >= 2x softmax; generation (batch 1) at
    position 4k >= 2x and at 16k >= 8x faster than softmax; LeaP flat in
    position (ms/token at 16k within 1.2x of 128). Rows not measured are n/a."""
    by = {(r["mode"], r["mechanism"], r["context"] or r["position"]): r for r in result["rows"]
          if not r.get("error")}

    def get(mode, mech, n, key="vs_softmax"):
        return by.get((mode, mech, n), {}).get(key)

    leap128, leap16k = get("generate", "leap", 128, "ms"), get("generate", "leap", 16384, "ms")
    flat = None if leap128 is None or leap16k is None else leap16k / leap128
    return [
        target("LeaP training tokens/s vs softmax at context 2k", ">= 2x",
               get("train", "leap", 2048), lambda v: v >= 2.0, "{:.2f}x"),
        target("LeaP generation speed vs softmax at position 4k", ">= 2x",
               get("generate", "leap", 4096), lambda v: v >= 2.0, "{:.2f}x"),
        target("LeaP generation speed vs softmax at position 16k", ">= 8x",
               get("generate", "leap", 16384), lambda v: v >= 8.0, "{:.2f}x"),
        target("LeaP ms/token at position 16k / at 128", "<= 1.2", flat,
               lambda v: v <= 1.2, "{:.2f}"),
    ]


def render_markdown(result: dict, command: str) -> str:
    cfg = result["config"]
    rows = result["rows"]
    model = f"{cfg['preset']} preset" + (f" with {cfg['model_overrides']}"
                                         if cfg["model_overrides"] else "")
    lines = [
        f"# LM speed ({result['machine']['device']})", "",
        machine_line(result["machine"]),
        f"- date: {result['machine']['date']}",
        f"- command: `{command}`",
        (f"- model: CausalLM, {model}, vocabulary {cfg['vocab_size']}; training "
        f"{cfg['tokens_per_step']} tokens per step; generation batch 1; medians of "
        f"{cfg['rounds']} interleaved rounds (method: `leapformer.bench.lm_speed`)"), "",
    ]
    if any(r["mode"] == "train" for r in rows):
        lines += ["## Training", "",
                  ("| context | batch | mechanism | ms / step | tokens/s | vs softmax | peak MB "
                  "| parameters |"), "|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["mode"] != "train":
                continue
            if r["error"]:
                lines.append(f"| {r['context']} | | {r['mechanism']} | failed: {r['error']} "
                             "| | | | |")
                continue
            lines.append(f"| {r['context']} | {r['batch']} | {r['mechanism']} | {fmt(r['ms'])} "
                         f"| {r['tokens_per_s']:.0f} | {fmt(r['vs_softmax'])} "
                         f"| {fmt(r['peak_mb'])} | {r['parameters']} |")
        lines.append("")
    if any(r["mode"] == "generate" for r in rows):
        lines += ["## Generation (batch 1, one token at position p)", "",
                  "| position | mechanism | ms / token | vs softmax | cache MB | step |",
                  "|---:|---|---:|---:|---:|---|"]
        for r in rows:
            if r["mode"] != "generate":
                continue
            if r["error"]:
                lines.append(f"| {fmt_len(r['position'])} | {r['mechanism']} | failed: "
                             f"{r['error']} | | | |")
                continue
            lines.append(f"| {fmt_len(r['position'])} | {r['mechanism']} | {fmt(r['ms'])} "
                         f"| {fmt(r['vs_softmax'])} | {fmt(r['cache_mb'])} "
                         f"| {r.get('step') or '-'} |")
        lines.append("")
    lines += [*targets_table(evaluate_targets(result)), ""]
    return "\n".join(lines)


def write_results(result: dict, out_dir: str | Path, command: str, stem: str) -> tuple[Path, Path]:
    data = dict(result, targets=evaluate_targets(result), command=command)
    return write_files(render_markdown(result, command), data, out_dir, stem)
