"""Decode benchmark: per-token latency and cache memory of a decoder-only stack.

Model: ``leapformer.nn.Decoder(layers, BlockConfig(d_model, nhead, dim_feedforward,
dropout=0.0), mechanism, cross=False).eval()`` under ``torch.no_grad()``,
float32; default 6 layers, width 512, 8 heads, FFN 2048 (~19M parameters,
76 MB of weights). One model per mechanism, built once per run (seeded).

A step decodes one new token per sequence at position ``p`` (``x [B, 1, 512]``
through all layers, with the self-attention cache holding ``p`` tokens):

- ``softmax``: a KV cache ``[B, H, p + 64, D]`` per layer (keys and values),
  read in full every step: grows with ``p``.
- ``linear``, ``cosformer``, ``leap``: the running sums ``s`` (constant size).
  cosFormer gets ``target_length = p + 100`` (it needs a target length).

With ``compile_step`` (the default) each step runs a
:class:`~leapformer.models.FusedDecoderStep` (the whole stack compiled with
``torch.compile``, one per mechanism for the run, compiled during the untimed
check call of the first group, again at most once for a second batch size);
cosFormer, which it does not cover, and any mechanism whose compile fails run
the eager modules (the row's note says which ran).

The cache at position ``p`` is made without decoding ``p`` tokens:
``dec.new_cache(B, max_length=p + 64 if softmax else None)``, every cache
tensor filled with ``normal_()`` (the linear states with ``abs_()`` so that the
denominators are positive), and ``length = queries = p`` set on every layer's
self-attention cache. Before every step (untimed) the positions are reset to
``p``, so every repetition decodes at the same position (softmax overwrites
slot ``p`` of its buffer; the linear states drift by one token's sums, which
does not change the work).

Timing (``leapformer.bench._common``): per (batch, position) group, the
mechanisms are warmed up, then timed round-robin (interleaved) until each has
its repetitions (``target_s / t_warm``, clamped to ``[min_reps, max_reps]``).
The groups are measured in ``rounds`` passes (default 6; every other pass in
reverse order) and each cell's samples are pooled, so that a burst of noise on
a shared machine or a slow drift does not decide one cell alone (on the 2-core
test machine, step times move by 20% for seconds at a time, and while another
process holds a core a 2-thread step can stall for multiples of ~48 ms). A row
reports the median ms per step over all its samples (``round_ms``: the median
of each round, JSON only) and ``vs_softmax`` = softmax ms / ms of the same
group (> 1 = faster). ``cache_mb`` = ``cache.nbytes`` / 1e6 at
position ``p`` (allocated bytes; the softmax buffer has room for ``p + 64``
tokens). ``tokens_per_s`` = batch / step time. Each group's caches are freed
before the next group is built.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from leapformer.bench._common import (
    machine_info,
    time_interleaved,
)
from leapformer.bench.decode_floor import FLOOR
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
BASELINE = "softmax"
LINEAR = tuple(m for m in MECHANISMS if m != BASELINE)
ROW_KEYS = ("batch", "position", "mechanism", "ms", "vs_softmax", "tokens_per_s", "cache_mb",
            "reps", "note", "round_ms")
SOFTMAX_SPARE = 64  # softmax cache capacity = position + SOFTMAX_SPARE
COSFORMER_MARGIN = 100  # cosFormer target length = position + COSFORMER_MARGIN


@dataclasses.dataclass
class DecodeConfig:
    """What to measure: the model sizes, positions, batch sizes and repetitions."""

    positions: tuple[int, ...] = (128, 1024, 4096, 16384)
    batches: tuple[int, ...] = (1, 8)
    mechanisms: tuple[str, ...] = MECHANISMS
    layers: int = 6
    d_model: int = 512
    heads: int = 8
    dim_feedforward: int = 2048
    device: str = "cpu"
    min_reps: int = 3
    max_reps: int = 60
    target_s: float = 0.6  # timed seconds per measurement and round (before clamping reps)
    warmup: int = 3  # warm-up calls for calls under 0.5 s; 1 otherwise
    rounds: int = 6  # passes over all groups (every other one reversed), samples pooled
    seed: int = 0
    compile_step: bool = True  # the compiled fused step (FusedDecoderStep); False: eager
    floor: bool = True  # also time the stack without attention (bench.decode_floor)

    @classmethod
    def quick(cls, **overrides) -> "DecodeConfig":
        """Positions 128 and 1k, batch 1, few repetitions: well under a minute on 2 CPU cores."""
        base = dict(positions=(128, 1024), batches=(1,), min_reps=3, max_reps=30, target_s=0.3,
                    warmup=2, rounds=1)
        return cls(**{**base, **overrides})

    def __post_init__(self):
        for name in ("positions", "batches"):
            values = tuple(getattr(self, name))
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must be positive integers, got {values}")
            setattr(self, name, values)
        self.mechanisms = tuple(self.mechanisms)
        if not self.mechanisms or len(set(self.mechanisms)) != len(self.mechanisms):
            raise ValueError(f"mechanisms must be distinct names, got {self.mechanisms}")
        if min(self.layers, self.d_model, self.heads, self.dim_feedforward) < 1 \
                or self.d_model % self.heads:
            raise ValueError(f"need positive sizes with d_model a multiple of heads, got "
                             f"layers={self.layers}, d_model={self.d_model}, heads={self.heads}, "
                             f"dim_feedforward={self.dim_feedforward}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be positive, got {self.rounds}")
        if not 1 <= self.min_reps <= self.max_reps:
            raise ValueError(f"need 1 <= min_reps <= max_reps, got {self.min_reps}, "
                             f"{self.max_reps}")


@dataclasses.dataclass
class DecodeResult:
    """Rows (dicts with :data:`ROW_KEYS`), the targets and the run's wall time."""

    machine: dict
    config: dict
    rows: list[dict]
    targets: list[dict]
    elapsed_s: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- the model


def build_decoders(cfg: DecodeConfig) -> dict:
    """One ``Decoder(...).eval()`` per mechanism (weights seeded, global RNG untouched)."""
    from leapformer.nn import BlockConfig, Decoder  # here: the CLI imports this module to parse

    block = BlockConfig(d_model=cfg.d_model, nhead=cfg.heads, dim_feedforward=cfg.dim_feedforward,
                        dropout=0.0)
    decoders = {}
    for i, mech in enumerate(cfg.mechanisms):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + i)
            dec = Decoder(cfg.layers, block, mech, cross=False)
        decoders[mech] = dec.to(cfg.device).eval()
    return decoders


def cache_at(dec, mechanism: str, batch: int, position: int,
             generator: torch.Generator | None = None):
    """A decoding cache of ``dec`` that holds ``position`` tokens of random state."""
    spare = SOFTMAX_SPARE if mechanism == BASELINE else None
    cache = dec.new_cache(batch, max_length=None if spare is None else position + spare)
    for lc in cache.layers:
        c = lc.self_attn
        for name, t in c.tensors.items():
            if t.is_floating_point():
                t.normal_(generator=generator)
                if name == "s":
                    t.abs_()  # positive denominators
        c.length = c.queries = position
    return cache


def rewind(cache, position: int) -> None:
    """Set every layer's self-attention cache back to ``position`` tokens."""
    for lc in cache.layers:
        lc.self_attn.length = lc.self_attn.queries = position


def _step(dec, cache, x, kw, fused=None) -> Callable[[], torch.Tensor]:
    def call():
        with torch.no_grad():
            if fused is not None:
                return fused(x, cache, **kw)
            return dec(x, cache=cache, **kw)
    return call


def step_kwargs(mechanism: str, position: int) -> dict:
    """Extra arguments of a decoding step (cosFormer needs a target length)."""
    return {"target_length": position + COSFORMER_MARGIN} if mechanism == "cosformer" else {}


# --------------------------------------------------------------------------- running


def groups(cfg: DecodeConfig) -> list[tuple[int, int]]:
    """The ``(batch, position)`` groups, batch-major, ascending."""
    return [(b, p) for b in sorted(set(cfg.batches)) for p in sorted(set(cfg.positions))]


def plan(cfg: DecodeConfig) -> list[tuple[int, int]]:
    """The measurement list: :func:`groups` once per round, every other round reversed."""
    order = groups(cfg)
    return [g for r in range(cfg.rounds) for g in (order if r % 2 == 0 else order[::-1])]


def build_steps(cfg: DecodeConfig, decoders: dict) -> dict:
    """One :class:`~leapformer.models.FusedDecoderStep` per decoder if ``compile_step``
    (else none), kept for the whole run: positions and cache sizes do not recompile it."""
    if not cfg.compile_step:
        return {}
    from leapformer.models import FusedDecoderStep  # here: the CLI imports this module to parse

    return {mech: FusedDecoderStep(dec, compile_after=0) for mech, dec in decoders.items()}


def build_floor(cfg: DecodeConfig, decoders: dict) -> tuple[Callable, str] | None:
    """The floor step (:func:`~leapformer.bench.decode_floor.floor_step`) on the weights of
    LeaP's decoder (else the first one), or None without ``cfg.floor``."""
    if not cfg.floor:
        return None
    from leapformer.bench.decode_floor import floor_step

    source = "leap" if "leap" in decoders else next(iter(decoders))
    return floor_step(decoders[source], compile=cfg.compile_step)


def measure_group(cfg: DecodeConfig, decoders: dict, batch: int, position: int,
                  steps: dict | None = None, floor: tuple[Callable, str] | None = None
                  ) -> dict[str, dict]:
    """Time one (batch, position) group, every mechanism interleaved (``steps``: from
    :func:`build_steps`; made here if None).

    Returns ``{mechanism: {"samples": seconds per step, "cache_mb": ..., "note": ...}}``.
    """
    device = torch.device(cfg.device)
    g = torch.Generator(device=device).manual_seed(cfg.seed + 7919 * batch + position)
    x = torch.randn(batch, 1, cfg.d_model, generator=g, device=device)
    fused = build_steps(cfg, decoders) if steps is None else steps
    caches, fns, setup, notes = {}, {}, {}, {}
    for mech in cfg.mechanisms:
        cache = cache_at(decoders[mech], mech, batch, position, g)
        caches[mech] = cache
        fns[mech] = _step(decoders[mech], cache, x, step_kwargs(mech, position), fused.get(mech))
        setup[mech] = lambda cache=cache: rewind(cache, position)
    if floor is not None:
        def floor_call(fn=floor[0]):
            with torch.no_grad():
                return fn(x)
        fns[FLOOR], notes[FLOOR] = floor_call, floor[1]
    for mech, fn in fns.items():  # one untimed check of the output (compiles the step)
        if mech in setup:
            setup[mech]()
        finite = bool(torch.isfinite(fn()).all())
        if mech in fused:
            notes[mech] = "compiled" if fused[mech].compiled else "eager"
        if not finite:
            notes[mech] = "; ".join(filter(None, (notes.get(mech), "non-finite output")))
            logger.warning("%s at batch %d, position %d: non-finite output", mech, batch, position)
    gc.collect()
    samples = time_interleaved(fns, device=device, warmup=cfg.warmup, min_reps=cfg.min_reps,
                               max_reps=cfg.max_reps, target_s=cfg.target_s, setup=setup)
    out = {}
    for mech, cache in caches.items():
        rewind(cache, position)
        out[mech] = {"samples": samples[mech], "cache_mb": cache.nbytes / 1e6,
                     "note": notes.get(mech, "")}
    if FLOOR in fns:
        out[FLOOR] = {"samples": samples[FLOOR], "cache_mb": 0.0, "note": notes[FLOOR]}
    del caches, fns, setup
    gc.collect()  # free this group's caches (softmax: GBs at 16k) before the next
    return out


def make_rows(cfg: DecodeConfig, measured: dict[tuple[int, int], list[dict]]) -> list[dict]:
    """Rows (:data:`ROW_KEYS`) from each group's measurements, pooled over rounds."""
    rows = []
    for batch, position in groups(cfg):
        group = []
        for mech in (*cfg.mechanisms, FLOOR):
            parts = [m[mech] for m in measured.get((batch, position), []) if mech in m]
            if not parts:
                continue
            samples = [t for part in parts for t in part["samples"]]
            ms = 1e3 * statistics.median(samples)
            row = dict.fromkeys(ROW_KEYS)
            row.update(batch=batch, position=position, mechanism=mech, ms=ms,
                       tokens_per_s=1e3 * batch / ms, cache_mb=parts[0]["cache_mb"],
                       reps=len(samples),
                       note="; ".join(sorted({p["note"] for p in parts if p["note"]})),
                       round_ms=[1e3 * statistics.median(p["samples"]) for p in parts])
            group.append(row)
        base = next((r["ms"] for r in group if r["mechanism"] == BASELINE), None)
        for row in group:
            if base is not None:
                row["vs_softmax"] = base / row["ms"]
        rows.extend(group)
    return rows


def run_decode_benchmark(cfg: DecodeConfig | None = None,
                         progress: Callable[[Iterable], Iterable] | None = None) -> DecodeResult:
    """Run :func:`plan` in order; ``progress`` may wrap the task list (e.g. ``tqdm``)."""
    cfg = cfg or DecodeConfig()
    start = time.perf_counter()
    decoders = build_decoders(cfg)
    steps = build_steps(cfg, decoders)
    floor = build_floor(cfg, decoders)
    tasks = plan(cfg)
    measured: dict[tuple[int, int], list[dict]] = {}
    for batch, position in (progress(tasks) if progress else tasks):
        logger.debug("measuring batch %d at position %d", batch, position)
        measured.setdefault((batch, position), []).append(
            measure_group(cfg, decoders, batch, position, steps, floor))
    rows = make_rows(cfg, measured)
    return DecodeResult(machine=machine_info(cfg.device), config=dataclasses.asdict(cfg),
                        rows=rows, targets=evaluate_targets(rows),
                        elapsed_s=time.perf_counter() - start)


# --------------------------------------------------------------------------- targets


def _get(rows, batch, mechanism, position, key):
    row = next((r for r in rows if (r["batch"], r["mechanism"], r["position"])
                == (batch, mechanism, position)), None)
    return None if row is None else row[key]


def spread(rows: list[dict], batch: int, mechanism: str) -> tuple[float | None, list[int]]:
    """Max / min step time over the positions measured (None if fewer than two)."""
    ms = {r["position"]: r["ms"] for r in rows if r["batch"] == batch
          and r["mechanism"] == mechanism and r["ms"] is not None}
    if len(ms) < 2:
        return None, sorted(ms)
    return max(ms.values()) / min(ms.values()), sorted(ms)


def evaluate_targets(rows: list[dict]) -> list[dict]:
    """The decode targets of issue 3 as dicts ``{name, target, value, status, shown}``."""
    out = []
    for batch in (1, 8):
        spreads = {m: spread(rows, batch, m) for m in LINEAR}
        positions = sorted({p for _, ps in spreads.values() for p in ps})
        span = f" {fmt_len(positions[0])}-{fmt_len(positions[-1])}" if len(positions) > 1 else ""
        out.append(target(f"LeaP step time max/min over positions{span}, batch {batch}",
                          "<= 1.2", spreads["leap"][0], lambda x: x <= 1.2, "{:.2f}"))
        known = {m: v for m, (v, _) in spreads.items() if v is not None}
        worst = max(known, key=known.get) if known else None
        out.append(target(f"Worst linear mechanism, step time max/min over positions{span}, "
                          f"batch {batch}", "<= 1.2", known.get(worst), lambda x: x <= 1.2,
                          "{:.2f}", worst or ""))
    for batch, want in ((1, 4.0), (8, 12.0)):
        for mech in LINEAR:
            out.append(target(f"{mech} vs softmax at position 16k, batch {batch}",
                              f">= {want:g}x faster", _get(rows, batch, mech, 16384, "vs_softmax"),
                              lambda x, w=want: x >= w, "{:.1f}x"))
    for batch in (1, 8):
        for mech in LINEAR:
            out.append(target(f"{mech} vs softmax at position 128, batch {batch}",
                              ">= 1.0x (no slower)", _get(rows, batch, mech, 128, "vs_softmax"),
                              lambda x: x >= 1.0, "{:.2f}x"))
    for other, name, want in (("linear", "ReLU linear's step", 1.10),
                              (FLOOR, "the floor (no attention)", 1.25)):
        worst, where = worst_ratio(rows, 1, "leap", other)
        out.append(target(f"LeaP step / {name}, batch 1, worst position", f"<= {want:.2f}",
                          worst, lambda x, w=want: x <= w, "{:.2f}",
                          "" if where is None else f"at {fmt_len(where)}"))
    return out


def worst_ratio(rows: list[dict], batch: int, mechanism: str, other: str
                ) -> tuple[float | None, int | None]:
    """The largest ``ms(mechanism) / ms(other)`` over the positions both have, and where."""
    ratios = {}
    for r in rows:
        if r["batch"] == batch and r["mechanism"] == mechanism and r["ms"]:
            base = _get(rows, batch, other, r["position"], "ms")
            if base:
                ratios[r["position"]] = r["ms"] / base
    if not ratios:
        return None, None
    where = max(ratios, key=ratios.get)
    return ratios[where], where


# --------------------------------------------------------------------------- reporting


def render_markdown(result: DecodeResult) -> str:
    """Machine, method, targets and one table per batch size, as markdown."""
    m, cfg = result.machine, result.config
    lines = [
        f"# Decode benchmark ({m['device']})",
        "",
        machine_line(m),
        f"- date: {m['date']}; run time {result.elapsed_s:.0f} s",
        f"- model: decoder-only `Decoder({cfg['layers']}, BlockConfig(d_model={cfg['d_model']}, "
        f"nhead={cfg['heads']}, dim_feedforward={cfg['dim_feedforward']}, dropout=0.0), mech, "
        f"cross=False).eval()`, float32, `torch.no_grad()`",
        "- step: one new token per sequence at the position (all layers); softmax reads a KV "
        "cache of `position` tokens, linear/cosformer/leap a constant-size state "
        f"(cosformer target length = position + {COSFORMER_MARGIN}); caches filled with random "
        "state, positions rewound before every step",
        "- ms: median wall time of one step, mechanisms timed interleaved per (batch, position), "
        f"samples pooled over {cfg['rounds']} pass(es) over all groups (rounds: the lowest and "
        "highest median of one pass); reps: samples per row; "
        "vs softmax: softmax ms / ms (> 1 = faster); tokens/s: batch / step time; "
        "cache MB: `cache.nbytes` at the position (1 MB = 1e6 B; the softmax buffer holds "
        f"position + {SOFTMAX_SPARE} tokens). Method in `leapformer.bench.decode`.",
        "- step: " + ("the compiled fused step (`FusedDecoderStep`, torch.compile) where the "
                      "note says `compiled`, the eager modules where it says `eager`"
                      if cfg.get("compile_step", False) else "the eager modules"),
        "- floor: the same stack (LeaP's weights) without attention: norms, q/k/v and output "
        "projections, residuals and feed-forward, the attention replaced by v "
        "(`leapformer.bench.decode_floor`): what every mechanism's step must at least do",
        "",
        *targets_table(result.targets),
    ]
    order = {name: i for i, name in enumerate((*MECHANISMS, FLOOR))}
    for batch in sorted({r["batch"] for r in result.rows}):
        rows = [r for r in result.rows if r["batch"] == batch]
        lines += ["", f"## Batch {batch}", "",
                  "| position | mechanism | ms | rounds (min-max) | vs softmax | tokens/s "
                  "| cache MB | reps | note |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in sorted(rows, key=lambda r: (r["position"], order.get(r["mechanism"], 99))):
            vs = "-" if r["vs_softmax"] is None else f"{fmt(r['vs_softmax'], 2)}x"
            rounds = r.get("round_ms") or []
            span = f"{fmt(min(rounds))}-{fmt(max(rounds))}" if len(rounds) > 1 else "-"
            lines.append(f"| {fmt_len(r['position'])} | {r['mechanism']} | {fmt(r['ms'])} | "
                         f"{span} | {vs} | {fmt(r['tokens_per_s'])} | {fmt(r['cache_mb'])} | "
                         f"{r['reps'] or '-'} | {r['note']} |")
    return "\n".join(lines) + "\n"


def write_results(result: DecodeResult, out_dir: str | Path,
                  stem: str = "decode-cpu") -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` under ``out_dir``; returns their paths."""
    return write_files(render_markdown(result), result.to_dict(), out_dir, stem)
