"""Latency metrics of simultaneous translation, with SimulEval's semantics.

One instance is a hypothesis of ``|Y|`` target units written while a source of
``|X|`` units was read. ``delays[i]`` is the amount of source read when target
unit ``i + 1`` was written: a count of source tokens for text input (1-based:
``delays[i] = 3`` means three source tokens had been read), milliseconds of
source audio for speech input. ``|Y*|`` is the reference length.

The formulas and every edge case follow SimulEval's scorers
(``simuleval/evaluator/scorers/latency_scorer.py``: ``LatencyScorer.__call__``
and ``ALScorer`` / ``LAALScorer`` / ``APScorer`` / ``DALScorer.compute``):

* target length ``T``: the reference length when one is given, else ``|Y|``
  (SimulEval's default ``use_ref_len=True``; ``LatencyScorer.__call__``);
* AL: ``d_1 > |X|`` gives ``AL = d_1``; else ``gamma = T / |X|`` and
  ``AL = (1/tau) sum_{i<=tau} (d_i - (i-1)/gamma)``, ``tau`` the first ``i``
  with ``d_i >= |X|`` (``|Y|`` if none) -- delays are never clipped;
* LAAL: AL with ``gamma = max(|Y|, T) / |X|``;
* AP: ``sum_i d_i / (|X| T)`` (``T`` is the reference length when given);
* DAL: ``gamma = |Y| / |X|`` always (SimulEval ignores the reference here),
  ``d'_1 = d_1``, ``d'_i = max(d_i, d'_{i-1} + 1/gamma)``,
  ``DAL = (1/|Y|) sum_i (d'_i - (i-1)/gamma)``;
* corpus scores: the plain mean of the per-instance scores; instances without
  delays are skipped with a warning.

Against the papers: AL as defined by Ma et al. 2019 (STACL) uses the
hypothesis length, ``gamma = |Y| / |X|``, and AP as defined by Cho & Esipova
2016 divides by ``|X| |Y|``. SimulEval (and so this module) puts the
reference length ``|Y*|`` in both when a reference is given. For AL, Papi et
al. 2022 show that this rewards over-generation (a hypothesis longer than the
reference gets a lower AL) and define LAAL with ``max(|Y|, |Y*|)``; that is
SimulEval's LAAL and this module's. For AP the reference length lets the
score exceed 1. The module keeps SimulEval's choices so that its numbers
compare with published SimulEval results and equal SimulEval's rescoring of
our logs; ``use_ref_len=False`` (SimulEval's ``--no-use-ref-len``) gives the
papers' AL and AP. DAL (Arivazhagan et al. 2019) uses ``|Y|`` in both.

The arithmetic is done in SimulEval's order, so scores agree with it to the
last bit on the same Python (tests/eval/test_simuleval_rescore.py runs the
installed SimulEval on our logs). SimulEval does not validate its inputs; here the
public functions do (see :func:`latency_scores`).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable, Mapping
from statistics import mean
from typing import Any

logger = logging.getLogger(__name__)

METRICS = ("AL", "LAAL", "AP", "DAL")
"""Keys of :func:`latency_scores`, in SimulEval's usual order."""

CA_SUFFIX = "_CA"
"""Suffix of the computation-aware scores (SimulEval's ``--computation-aware`` names)."""


# --- validation -------------------------------------------------------------------------


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _timestamps(values: Any, name: str) -> list:
    """``values`` as a list of finite, non-negative, non-decreasing numbers (may be empty)."""
    if isinstance(values, (str, bytes, Mapping)) or values is None:
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    if hasattr(values, "tolist"):  # numpy arrays, torch tensors
        values = values.tolist()
        if not isinstance(values, list):
            raise TypeError(f"{name} must be one-dimensional, got a scalar")
    try:
        out = list(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}") from None
    for i, v in enumerate(out):
        if not _is_real(v):
            raise TypeError(f"{name}[{i}] must be a real number, got {v!r} ({type(v).__name__})")
        if not math.isfinite(v):
            raise ValueError(f"{name}[{i}] must be finite, got {v!r}")
        if v < 0:
            raise ValueError(f"{name}[{i}] must be non-negative, got {v!r}")
        if i > 0 and v < out[i - 1]:
            raise ValueError(
                f"{name} must be non-decreasing: {name}[{i}] = {v!r} < {name}[{i - 1}] = {out[i - 1]!r}"
            )
    return out


def _source_length(value: Any, name: str = "source_length") -> Any:
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"{name} must be a finite number >= 1, got {value!r}")
    return value


def _reference_length(value: Any, name: str = "reference_length") -> int | None:
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer or None, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


# --- per-instance formulas (inputs already validated, delays non-empty) -------------------


def _lagging(delays: list, source_length: Any, gamma: float) -> float:
    """AL's sum up to tau (shared by AL and LAAL, which differ only in gamma)."""
    if delays[0] > source_length:
        return float(delays[0])
    total = 0.0
    tau = 0
    for t_minus_1, d in enumerate(delays):
        total += d - t_minus_1 / gamma
        tau = t_minus_1 + 1
        if d >= source_length:
            break
    return total / tau


def _scores(delays: list, source_length: Any, reference_length: int | None) -> dict[str, float]:
    hyp_len = len(delays)
    target_length = hyp_len if reference_length is None else reference_length
    al = _lagging(delays, source_length, target_length / source_length)
    laal = _lagging(delays, source_length, max(hyp_len, target_length) / source_length)
    ap = sum(delays) / (source_length * target_length)

    gamma = hyp_len / source_length
    dal = 0.0
    previous = 0.0
    for i_minus_1, d in enumerate(delays):
        current = d if i_minus_1 == 0 else max(d, previous + 1 / gamma)
        dal += current - i_minus_1 / gamma
        previous = current
    dal /= hyp_len
    return {"AL": float(al), "LAAL": float(laal), "AP": float(ap), "DAL": float(dal)}


# --- public -------------------------------------------------------------------------------


def latency_scores(delays, source_length, reference_length=None) -> dict[str, float]:
    """AL, LAAL, AP and DAL of one instance, as SimulEval computes them.

    Args:
        delays: one number per target unit: the source read when it was written
            (tokens for text, 1-based counts; ms for speech). Non-empty,
            finite, non-negative and non-decreasing. Values above
            ``source_length`` are allowed and used as they are (SimulEval does
            not clip): ``delays[0] > source_length`` makes AL and LAAL equal
            ``delays[0]``.
        source_length: ``|X|`` in the unit of ``delays`` (a number >= 1).
        reference_length: ``|Y*|`` (positive int), or None to use the
            hypothesis length ``len(delays)`` (SimulEval without a reference,
            or with ``--no-use-ref-len``).

    Returns:
        ``{"AL", "LAAL", "AP", "DAL"}`` as floats; see the module docstring
        for the formulas. Without a reference LAAL equals AL.

    Raises:
        ValueError: empty ``delays`` (SimulEval has no score for such an
            instance: its corpus scorer skips it, see :func:`corpus_latency`),
            negative, non-finite or decreasing delays, ``source_length < 1``,
            ``reference_length < 1``.
        TypeError: non-numeric arguments.
    """
    delays = _timestamps(delays, "delays")
    if not delays:
        raise ValueError("delays is empty: an instance without target units has no latency")
    return _scores(delays, _source_length(source_length), _reference_length(reference_length))


def computation_aware_scores(elapsed, source_length, reference_length=None) -> dict[str, float]:
    """Computation-aware AL, LAAL, AP and DAL of one instance (SimulEval ``--computation-aware``).

    SimulEval's computation-aware scorers run the same formulas as
    :func:`latency_scores` with ``elapsed`` in place of ``delays`` and the same
    source and target lengths (``LatencyScorer.timestamp_type``). ``elapsed[i]``
    is the time at which target unit ``i + 1`` was written, on the clock of the
    source stream: for speech, ms of source read plus the wall-clock ms spent
    computing since the start (``SpeechInputInstance.step_to_elapsed``).
    ``source_length`` must be in the same unit, i.e. the duration of the
    source in ms.

    Text input has no clock: SimulEval refuses computation-aware scores for it
    (a ``RuntimeError`` in ``LatencyScorer.__call__``) and logs zeros as
    elapsed. To measure text anyway, give the source a rate of ``r`` ms per
    token (the convention of OSU-STARLAB's Simul-LLM SimulEval extension):
    ``elapsed[i] = delays[i] * r + computation ms so far`` and
    ``source_length = |X| * r``.

    Returns:
        ``{"AL_CA", "LAAL_CA", "AP_CA", "DAL_CA"}`` as floats.

    Raises:
        ValueError / TypeError: as :func:`latency_scores`, naming ``elapsed``.
    """
    elapsed = _timestamps(elapsed, "elapsed")
    if not elapsed:
        raise ValueError("elapsed is empty: an instance without target units has no latency")
    scores = _scores(elapsed, _source_length(source_length), _reference_length(reference_length))
    return {name + CA_SUFFIX: value for name, value in scores.items()}


def _get(instance: Any, key: str, default: Any = None) -> Any:
    if isinstance(instance, Mapping):
        return instance.get(key, default)
    return getattr(instance, key, default)


def instance_reference_length(instance: Any) -> int | None:
    """``|Y*|`` of a log instance: its ``reference_length`` when set, else the
    number of words of its ``reference`` split on single spaces (SimulEval's
    ``LogInstance``: ``len(reference.split(" "))``), else None (no reference)."""
    value = _get(instance, "reference_length")
    if value is not None:
        return _reference_length(value)
    reference = _get(instance, "reference")
    if reference is None:
        return None
    if not isinstance(reference, str):
        raise TypeError(f"reference must be a string or None, got {type(reference).__name__}")
    return len(reference.split(" "))


def has_timing(elapsed: Any) -> bool:
    """True when ``elapsed`` carries timing: non-empty and not all zeros (SimulEval
    writes zeros as the elapsed times of text input, which carry none)."""
    return elapsed is not None and len(elapsed) > 0 and any(e != 0 for e in elapsed)


def corpus_latency(instances: Iterable[Any], *, use_ref_len: bool = True) -> dict[str, float]:
    """Corpus latency: the mean over instances of the per-instance scores (SimulEval).

    Args:
        instances: records of ``instances.log`` (:class:`~leapformer.eval.InstanceRecord`)
            or mappings / objects with the same fields: ``delays``,
            ``source_length`` and optionally ``reference_length`` or
            ``reference`` (see :func:`instance_reference_length`), ``elapsed``,
            ``source_duration_ms`` (the source length in the unit of
            ``elapsed``; defaults to ``source_length``, right for speech) and
            ``index`` (used in messages).
        use_ref_len: False scores against the hypothesis length, as
            SimulEval's ``--no-use-ref-len``.

    Returns:
        ``{"AL", "LAAL", "AP", "DAL"}``, plus ``AL_CA``, ``LAAL_CA``, ``AP_CA``
        and ``DAL_CA`` when at least one instance has elapsed times (averaged
        over those that have; see :func:`has_timing`).

    Instances with empty delays are skipped with a warning, as SimulEval does.

    Raises:
        ValueError: no instance has delays, or an instance is invalid (the
            message names its index).
    """
    plain: list[dict[str, float]] = []
    aware: list[dict[str, float]] = []
    seen = 0
    for position, ins in enumerate(instances):
        seen += 1
        index = _get(ins, "index", position)
        try:
            delays = _get(ins, "delays")
            if delays is None or len(delays) == 0:
                logger.warning("instance %s has no delays: skipped", index)
                continue
            source_length = _get(ins, "source_length")
            reference_length = instance_reference_length(ins) if use_ref_len else None
            plain.append(latency_scores(delays, source_length, reference_length))
            elapsed = _get(ins, "elapsed")
            if has_timing(elapsed):
                if len(elapsed) != len(delays):
                    raise ValueError(f"elapsed has {len(elapsed)} values but delays has {len(delays)}")
                duration = _get(ins, "source_duration_ms")
                if duration is None:
                    duration = source_length
                aware.append(computation_aware_scores(elapsed, duration, reference_length))
        except (TypeError, ValueError) as err:
            raise type(err)(f"instance {index}: {err}") from None
    if not plain:
        raise ValueError(f"no instance with delays among {seen}: nothing to score")
    out = {name: mean(s[name] for s in plain) for name in METRICS}
    if aware:
        if len(aware) < len(plain):
            logger.warning(
                "computation-aware scores average %d of %d instances (the others have no elapsed times)",
                len(aware),
                len(plain),
            )
        for name in METRICS:
            key = name + CA_SUFFIX
            out[key] = mean(s[key] for s in aware)
    return out
