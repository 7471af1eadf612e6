"""Ops benchmark: the linear mechanisms against softmax attention (torch SDPA).

Inputs are ``q, k, v [B, H, N, D]`` (default B=1, H=8, D=Dv=64, float32);
LeaP proportions are ``[B, H, N]`` uniform in [0, 1]. Scenarios:

- ``fwd``: bidirectional forward under ``torch.no_grad()``.
- ``causal_fwd``: causal forward under ``torch.no_grad()``.
- ``causal_fwd_bwd``: causal forward, then ``o.sum().backward()``; q, k, v (and
  the LeaP proportions) require grad.
- ``decode``: one token at position ``p``. Linear mechanisms: a call with
  ``M = N = 1``, ``causal=True``, ``mode="recurrent"`` from a state (the state
  does not grow with ``p``; cosFormer uses ``offset = p - 1`` and
  ``max_length`` = the largest position). Softmax: one query attending to a
  preallocated KV cache of ``p`` keys (cache writes not timed).

Mechanisms carry the names of the registry (:data:`MECHANISMS`: ``softmax``,
``leap``, ``cosformer``, ``linear`` = ReLU features, ``elu`` = ELU+1 features);
a row's ``impl`` names the function timed (:data:`IMPLEMENTATIONS`; softmax is
``torch.nn.functional.scaled_dot_product_attention``, "sdpa"). Results written
before used ``sdpa``, ``linear_relu``, ``linear_elu`` and ``vs_sdpa``
(:mod:`leapformer.bench.names` maps them).

Timing: per (scenario, length) every mechanism is warmed up, then the
mechanisms are timed round-robin (interleaved, same process and inputs) until
each has its repetitions; the row reports the median in ms. Repetitions adapt to
the cost: ``target_s / t_warm``, clamped to ``[min_reps, max_reps]``. Decode
is the exception: softmax is timed in its own pass right after the linear
mechanisms, because its KV cache (33 MB per tensor at 16k) evicts the CPU caches
and doubled the time of a linear step timed after it.

FLOP count per head (reported as ``flop`` for the whole batch; GFLOP/s =
flop / median time). Linear mechanisms count the GEMM work with feature width
``F = D`` (relu/elu linear) or ``2D`` (LeaP/cosFormer: sin and cos halves):
bidirectional ``2 N F (Dv+1) + 2 M F (Dv+1)`` (build the state, read it; the +1
is the denominator column); causal adds the intra-chunk work
``2 N C F + 2 N C (Dv+1)`` with ``C = min(chunk_size, N)``; a decode step is the
bidirectional count with ``M = N = 1``. Softmax: ``2 M N D + 2 M N Dv`` (= 4 M N D)
bidirectional, half of it causal, ``M = 1, N = p`` for decode. Backward is
counted as twice the forward, so fwd+bwd = 3x forward. Elementwise work
(feature maps, re-weighting, softmax) is not counted.

Peers (:mod:`leapformer.bench.peers`, ``peers``; the CLI times every installed
one by default): other libraries' causal ELU+1 linear attention, timed beside the
``elu`` row in the causal scenarios.
Contention (``contended = N``, :mod:`leapformer.bench.contention`): ``N`` other
torch processes keep the cores busy during the whole measurement, and a
``leap-1thread`` row (LeaP with ``torch.set_num_threads(1)`` around the call)
is added to the bidirectional scenario: the fallback a user has on a busy machine.

Peak memory (``peak_mb``, 1 MB = 1e6 bytes): the peak of the bytes allocated
by one call above what was allocated before it (inputs, KV cache and state
excluded; outputs, saved activations and gradients included). On CUDA:
``torch.cuda.max_memory_allocated`` minus the allocation before the call. On
CPU: the CPU allocator's allocation/free events recorded by
``torch.profiler.profile(profile_memory=True)``, sorted by time; the peak of
their running sum. Measured in one extra, untimed call.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from leapformer.bench._common import (
    machine_info,
    peak_memory_bytes,
    time_interleaved,
)
from leapformer.bench.contention import contention
from leapformer.bench.names import LEGACY_NAMES
from leapformer.bench.ops_targets import MATMUL_SIZE, SINGLE_THREAD, evaluate_targets
from leapformer.bench.peers import PEERS, check_peers, peer_cases, peer_skip_reason
from leapformer.report.tables import (
    fmt as _fmt,
    fmt_len as _fmt_len,
    machine_line,
    targets_table,
    write_files,
)
from leapformer.ops import (
    LinearAttentionState,
    cosformer_attention,
    leap_attention,
    linear_attention,
    softmax_attention,
)

logger = logging.getLogger(__name__)

MECHANISMS = ("softmax", "leap", "cosformer", "linear", "elu")
BASELINE = "softmax"
IMPLEMENTATIONS = {
    "softmax": "sdpa",  # softmax_attention: torch's scaled_dot_product_attention
    "leap": "leap_attention",
    "cosformer": "cosformer_attention",
    "linear": "linear_attention(relu)",
    "elu": "linear_attention(elu)",
}
"""Mechanism -> the :mod:`leapformer.ops` call it times (the rows' ``impl``)."""
_FEATURE_MAPS = {"linear": "relu", "elu": "elu"}
SCENARIOS = {
    "fwd": "Forward, bidirectional",
    "causal_fwd": "Forward, causal",
    "causal_fwd_bwd": "Forward + backward, causal",
    "decode": "Recurrent decode step (one token; length = position)",
}
ROW_KEYS = ("scenario", "mechanism", "impl", "length", "ms", "vs_softmax", "gflops", "flop",
            "peak_mb", "reps", "note")
REWEIGHTED = ("leap", "cosformer")


@dataclasses.dataclass
class BenchConfig:
    """What to measure. ``positions`` defaults to ``(128, max(lengths))``."""

    lengths: tuple[int, ...] = (1024, 4096, 16384)
    positions: tuple[int, ...] | None = None
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    mechanisms: tuple[str, ...] = MECHANISMS
    batch: int = 1
    heads: int = 8
    head_dim: int = 64
    chunk_size: int = 64
    device: str = "cpu"
    min_reps: int = 3
    max_reps: int = 200
    target_s: float = 1.5  # timed seconds per measurement (before clamping reps)
    warmup: int = 3  # warm-up calls for calls under 0.5 s; 1 otherwise
    max_sdpa_bytes: float = 8e9  # skip softmax (SDPA) where its extrapolated peak exceeds this
    max_sdpa_seconds: float = 60.0  # ... or its extrapolated time per call
    seed: int = 0
    peers: tuple[str, ...] = ()  # bench.peers names; the CLI's default: the installed ones
    contended: int = 0  # other busy torch processes during the measurement
    contention_work: str = "matmul"
    contention_threads: int | None = None

    def __post_init__(self):
        self.mechanisms = tuple(self.mechanisms)
        self.peers = check_peers(self.peers)
        if isinstance(self.contended, bool) or not isinstance(self.contended, int) \
                or self.contended < 0:
            raise ValueError(f"contended must be an integer >= 0, got {self.contended!r}")
        for m in self.mechanisms:
            if m not in MECHANISMS:
                renamed = f" (now {LEGACY_NAMES[m]!r})" if m in LEGACY_NAMES else ""
                raise ValueError(f"unknown mechanism {m!r}{renamed}; expected one of {MECHANISMS}")

    @classmethod
    def quick(cls, **overrides) -> "BenchConfig":
        """Lengths 1k/2k, few repetitions: well under a minute on 2 CPU cores."""
        base = dict(lengths=(1024, 2048), min_reps=3, max_reps=30, target_s=0.3, warmup=2)
        return cls(**{**base, **overrides})

    def decode_positions(self) -> tuple[int, ...]:
        if self.positions is not None:
            return tuple(sorted(set(self.positions)))
        return tuple(sorted({128, max(self.lengths)}))


@dataclasses.dataclass
class BenchResult:
    """Rows (dicts with :data:`ROW_KEYS`), the matmul reference and the targets."""

    machine: dict
    config: dict
    matmul: dict
    rows: list[dict]
    targets: list[dict]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- measuring


# --------------------------------------------------------------------------- FLOPs


def flop_count(mechanism: str, scenario: str, length: int, *, batch: int = 1, heads: int = 8,
               head_dim: int = 64, value_dim: int | None = None, chunk_size: int = 64) -> int:
    """FLOPs of one call as defined in the module docstring (``length`` = position for decode)."""
    D = head_dim
    Dv = D if value_dim is None else value_dim
    causal = scenario.startswith("causal")
    if mechanism == BASELINE:
        M, N = (1, length) if scenario == "decode" else (length, length)
        per_head = (2 * M * N * D + 2 * M * N * Dv) // (2 if causal else 1)
    else:
        F = 2 * D if mechanism in REWEIGHTED else D
        M = N = 1 if scenario == "decode" else length
        per_head = 2 * N * F * (Dv + 1) + 2 * M * F * (Dv + 1)
        if causal:
            C = min(chunk_size, N)
            per_head += 2 * N * C * F + 2 * N * C * (Dv + 1)
    if scenario.endswith("bwd"):
        per_head *= 3
    return per_head * batch * heads


# --------------------------------------------------------------------------- cases


def _attend(mechanism: str, q, k, v, qp, kp, *, causal: bool, chunk_size: int, **extra):
    if mechanism == "softmax":
        return softmax_attention(q, k, v, causal=causal)
    if mechanism == "leap":
        return leap_attention(q, k, v, qp, kp, causal=causal, chunk_size=chunk_size, **extra)
    if mechanism == "cosformer":
        return cosformer_attention(q, k, v, causal=causal, chunk_size=chunk_size, **extra)
    if mechanism in _FEATURE_MAPS:
        return linear_attention(q, k, v, feature_map=_FEATURE_MAPS[mechanism],
                                causal=causal, chunk_size=chunk_size, **extra)
    raise ValueError(f"unknown mechanism {mechanism!r}; expected one of {MECHANISMS}")


def _sequence_cases(cfg: BenchConfig, scenario: str, N: int) -> dict[str, Callable[[], object]]:
    """Zero-argument calls, one per mechanism, on shared inputs of length ``N``."""
    device = torch.device(cfg.device)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    shape = (cfg.batch, cfg.heads, N, cfg.head_dim)
    q, k, v = (torch.randn(shape, generator=g, device=device) for _ in range(3))
    qp, kp = (torch.rand(shape[:3], generator=g, device=device) for _ in range(2))
    causal = scenario != "fwd"
    backward = scenario == "causal_fwd_bwd"
    leaves = (q, k, v, qp, kp)
    if backward:
        for t in leaves:
            t.requires_grad_(True)

    def case(mech):
        def call():
            if not backward:
                with torch.no_grad():
                    return _attend(mech, q, k, v, qp, kp, causal=causal, chunk_size=cfg.chunk_size)
            for t in leaves:
                t.grad = None
            o = _attend(mech, q, k, v, qp, kp, causal=causal, chunk_size=cfg.chunk_size)
            o.sum().backward()
            return o
        return call

    cases = {m: case(m) for m in cfg.mechanisms}
    cases.update(peer_cases(cfg.peers, scenario, q, k, v, backward=backward, leaves=leaves))
    if cfg.contended and scenario == "fwd" and "leap" in cases:
        cases[SINGLE_THREAD] = _one_thread(cases["leap"])
    return cases


def _one_thread(fn):
    def call():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)
    return call


def _decode_cases(cfg: BenchConfig, position: int) -> dict[str, Callable[[], object]]:
    """One-token calls at ``position``: a state (linear) or a KV cache of ``position`` keys
    (softmax)."""
    device = torch.device(cfg.device)
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    B, H, D = cfg.batch, cfg.heads, cfg.head_dim
    q, k, v = (torch.randn(B, H, 1, D, generator=g, device=device) for _ in range(3))
    k_cache, v_cache = (torch.randn(B, H, position, D, generator=g, device=device) for _ in range(2))
    budget = max(cfg.decode_positions())
    prop = torch.full((B, H, 1), position / budget, device=device)

    def case(mech):
        if mech == BASELINE:
            return lambda: softmax_attention(q, k_cache, v_cache)
        groups = 2 if mech in REWEIGHTED else 1
        state = LinearAttentionState.zeros(B, H, groups, D, D, device=device)
        state.s.uniform_(generator=g)
        extra = dict(mode="recurrent", initial_state=state, output_final_state=True)
        if mech == "cosformer":
            extra.update(offset=position - 1, max_length=budget)
        return lambda: _attend(mech, q, k, v, prop, prop, causal=True, chunk_size=cfg.chunk_size,
                               **extra)

    def no_grad(fn):
        def call():
            with torch.no_grad():
                return fn()
        return call

    return {m: no_grad(case(m)) for m in cfg.mechanisms}


# --------------------------------------------------------------------------- running


def plan(cfg: BenchConfig) -> list[tuple[str, int]]:
    """The measurement list: ``("matmul", 2048)``, then ``(scenario, length)`` groups."""
    tasks = [("matmul", MATMUL_SIZE)]
    for scenario in cfg.scenarios:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; expected one of {tuple(SCENARIOS)}")
        sizes = cfg.decode_positions() if scenario == "decode" else sorted(set(cfg.lengths))
        tasks.extend((scenario, n) for n in sizes)
    return tasks


def _measure_matmul(cfg: BenchConfig) -> dict:
    device = torch.device(cfg.device)
    n = MATMUL_SIZE
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    samples = time_interleaved({"matmul": lambda: a @ b}, device=device, warmup=cfg.warmup,
                               min_reps=cfg.min_reps, max_reps=cfg.max_reps, target_s=cfg.target_s)
    ms = 1e3 * statistics.median(samples["matmul"])
    return {"size": n, "ms": ms, "gflops": 2 * n**3 / ms / 1e6, "reps": len(samples["matmul"])}


def _softmax_skip_reason(cfg: BenchConfig, rows: list[dict], scenario: str, n: int) -> str | None:
    """Skip softmax when the last smaller length, scaled quadratically, predicts too much time
    or memory."""
    prev = [r for r in rows if r["scenario"] == scenario and r["mechanism"] == BASELINE
            and r["ms"] is not None and r["length"] < n]
    if not prev:
        return None
    last = max(prev, key=lambda r: r["length"])
    scale = (n / last["length"]) ** 2
    est_s = last["ms"] * scale / 1e3
    est_bytes = (last["peak_mb"] or 0.0) * 1e6 * scale
    if est_s > cfg.max_sdpa_seconds or est_bytes > cfg.max_sdpa_bytes:
        return f"skipped: predicted {est_s:.0f} s, {est_bytes / 1e9:.1f} GB per call"
    return None


def _measure_group(cfg: BenchConfig, scenario: str, n: int, rows: list[dict]) -> list[dict]:
    device = torch.device(cfg.device)
    cases = _decode_cases(cfg, n) if scenario == "decode" else _sequence_cases(cfg, scenario, n)
    notes = {}
    if BASELINE in cases:
        reason = _softmax_skip_reason(cfg, rows, scenario, n)
        if reason:
            logger.info("%s at %d: softmax %s", scenario, n, reason)
            notes[BASELINE] = reason
            del cases[BASELINE]
    # Decode: softmax reads a KV cache that grows with the position and evicts the CPU
    # caches, which would slow the (position-independent) linear steps timed after it;
    # so it is timed in a pass of its own there.
    passes = [cases]
    if scenario == "decode" and BASELINE in cases:
        passes = [{m: f for m, f in cases.items() if m != BASELINE}, {BASELINE: cases[BASELINE]}]
    samples = {}
    for fns in passes:
        gc.collect()
        samples.update(time_interleaved(fns, device=device, warmup=cfg.warmup,
                                        min_reps=cfg.min_reps, max_reps=cfg.max_reps,
                                        target_s=cfg.target_s))
    group = []
    extra = [SINGLE_THREAD] if SINGLE_THREAD in cases else []
    if scenario in ("causal_fwd", "causal_fwd_bwd"):
        extra += list(cfg.peers)
        notes.update({p: peer_skip_reason(p, n) for p in cfg.peers if p not in cases})
    for mech in (*cfg.mechanisms, *extra):
        row = dict.fromkeys(ROW_KEYS)
        impl = PEERS.get(mech) or IMPLEMENTATIONS.get(mech) or "leap_attention, 1 thread"
        counted = "elu" if mech in PEERS else "leap" if mech == SINGLE_THREAD else mech
        row.update(scenario=scenario, mechanism=mech, impl=impl, length=n,
                   note=notes.get(mech, "") or ("" if mech in cases else "not run"),
                   flop=flop_count(counted, scenario, n, batch=cfg.batch, heads=cfg.heads,
                                   head_dim=cfg.head_dim, chunk_size=cfg.chunk_size))
        if mech in samples:
            ms = 1e3 * statistics.median(samples[mech])
            peak = peak_memory_bytes(cases[mech], device)
            row.update(ms=ms, reps=len(samples[mech]), gflops=row["flop"] / ms / 1e6,
                       peak_mb=None if peak is None else peak / 1e6)
        group.append(row)
    base = next((r["ms"] for r in group if r["mechanism"] == BASELINE), None)
    for row in group:
        if base is not None and row["ms"] is not None:
            row["vs_softmax"] = base / row["ms"]
    return group


def run_ops_benchmark(cfg: BenchConfig | None = None,
                      progress: Callable[[Iterable], Iterable] | None = None) -> BenchResult:
    """Run :func:`plan` in order; ``progress`` may wrap the task list (e.g. ``tqdm``)."""
    cfg = cfg or BenchConfig()
    tasks = plan(cfg)
    rows: list[dict] = []
    matmul: dict = {}
    with contention(cfg.contended, work=cfg.contention_work, threads=cfg.contention_threads):
        for scenario, n in (progress(tasks) if progress else tasks):
            logger.debug("measuring %s at %d", scenario, n)
            if scenario == "matmul":
                matmul = _measure_matmul(cfg)
            else:
                rows.extend(_measure_group(cfg, scenario, n, rows))
    return BenchResult(machine=machine_info(cfg.device), config=dataclasses.asdict(cfg),
                       matmul=matmul, rows=rows,
                       targets=evaluate_targets(rows, matmul, contended=cfg.contended))


# --------------------------------------------------------------------------- reporting


def render_markdown(result: BenchResult) -> str:
    """Machine, method, targets and one table per scenario, as markdown."""
    m, cfg = result.machine, result.config
    lines = [
        f"# Ops benchmark ({m['device']})",
        "",
        machine_line(m),
        f"- date: {m['date']}",
        *([f"- contended: {cfg['contended']} other torch process(es) running "
           f"{cfg['contention_work']} throughout; OMP_WAIT_POLICY "
           f"{m.get('omp_wait_policy') or 'unset'} (all processes)"]
          if cfg.get("contended") else []),
        f"- shapes: B={cfg['batch']}, H={cfg['heads']}, D=Dv={cfg['head_dim']}, float32; "
        f"chunk {cfg['chunk_size']}",
        "- mechanism: registry name; impl: the `leapformer.ops` call timed (softmax: "
        "torch's scaled_dot_product_attention, sdpa)",
        "- ms: median wall time of one call; vs softmax: softmax ms / ms (> 1 = faster than "
        "softmax); GFLOP/s: counted GEMM FLOPs / time (definitions in `leapformer.bench.ops`); "
        "peak MB: peak bytes allocated by the call (1 MB = 1e6 B)",
    ]
    if result.matmul:
        mm = result.matmul
        lines.append(f"- reference: {mm['size']}x{mm['size']} float32 matmul "
                     f"{mm['gflops']:.1f} GFLOP/s ({mm['ms']:.2f} ms)")
    lines += ["", *targets_table(result.targets)]
    for scenario, title in SCENARIOS.items():
        rows = [r for r in result.rows if r["scenario"] == scenario]
        if not rows:
            continue
        lines += ["", f"## {title}", "",
                  "| length | mechanism | impl | ms | vs softmax | GFLOP/s | peak MB | reps "
                  "| note |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---|"]
        order = (*MECHANISMS, SINGLE_THREAD, *PEERS)
        for r in sorted(rows, key=lambda r: (r["length"], order.index(r["mechanism"])
                                             if r["mechanism"] in order else 99)):
            vs = "-" if r["vs_softmax"] is None else f"{_fmt(r['vs_softmax'], 2)}x"
            impl = r.get("impl") or "-"
            lines.append(f"| {_fmt_len(r['length'])} | {r['mechanism']} | {impl} | "
                         f"{_fmt(r['ms'])} | {vs} | "
                         f"{_fmt(r['gflops'], 2)} | {_fmt(r['peak_mb'])} | {r['reps'] or '-'} | "
                         f"{r['note']} |")
    return "\n".join(lines) + "\n"


def write_results(result: BenchResult, out_dir: str | Path, stem: str = "ops-cpu") -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` under ``out_dir``; returns their paths."""
    return write_files(render_markdown(result), result.to_dict(), out_dir, stem)
