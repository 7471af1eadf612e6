"""SimulEval-compatible output: ``instances.log`` and ``scores.json``.

``instances.log`` holds one JSON object per line, one line per instance, with
the keys SimulEval's ``Instance.summarize()`` writes for text output
(``simuleval/evaluator/instance.py``), in its order::

    {"index": 0, "prediction": "a b c", "delays": [2, 3, 4], "elapsed": [...],
     "prediction_length": 3, "reference": "a b c d", "source": "w x y z",
     "source_length": 4}

and two optional keys of this project, written only when set:
``reference_length`` (``|Y*|`` when the reference is not counted in words
split on single spaces, e.g. characters or subwords) and
``source_duration_ms`` (the source length in the unit of ``elapsed``, for the
computation-aware scores of text input; see
:func:`~leapformer.eval.computation_aware_scores`). Other keys found in a log
(e.g. SimulEval 1.0's ``metric``) are kept in :attr:`InstanceRecord.extra`.

``scores.json`` is one flat JSON object: ``BLEU`` (given by the caller), then
``AL``, ``LAAL``, ``AP``, ``DAL`` and, when the log has elapsed times, their
computation-aware variants ``AL_CA`` ... ``DAL_CA`` -- the names of
SimulEval's ``scores.tsv`` columns. Values are not rounded (SimulEval rounds
its table to three decimals), so the file equals :func:`scores_from_log`
exactly.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leapformer._io import atomic_write_text
from leapformer.eval.latency import (
    _is_real,
    _reference_length,
    _source_length,
    _timestamps,
    corpus_latency,
)

logger = logging.getLogger(__name__)

INSTANCES_LOG = "instances.log"
SCORES_JSON = "scores.json"

# the keys of SimulEval's Instance.summarize() for text output, in its order
SIMULEVAL_KEYS = (
    "index",
    "prediction",
    "delays",
    "elapsed",
    "prediction_length",
    "reference",
    "source",
    "source_length",
)
OPTIONAL_KEYS = ("reference_length", "source_duration_ms")
_REQUIRED = ("index", "prediction", "delays", "source_length")


@dataclass
class InstanceRecord:
    """One line of ``instances.log``.

    Attributes:
        index: position of the sentence pair in the corpus (int >= 0).
        prediction: the hypothesis, detokenised text.
        delays: source read when each target unit was written (see
            :func:`~leapformer.eval.latency_scores`).
        source_length: ``|X|`` in the unit of ``delays``.
        elapsed: computation-aware times of each target unit (ms), or empty.
        reference: the reference translation, or None.
        source: the source (SimulEval writes the source tokens joined by
            spaces for text input); any JSON value.
        reference_length: explicit ``|Y*|``; None counts ``reference`` split
            on single spaces, as SimulEval's ``LogInstance`` does.
        source_duration_ms: source length in the unit of ``elapsed``; None
            means ``source_length`` (SimulEval's behaviour, right for speech).
        extra: other keys of the line, kept as they are.
    """

    index: int
    prediction: str
    delays: list
    source_length: float
    elapsed: list = field(default_factory=list)
    reference: str | None = None
    source: Any = None
    reference_length: int | None = None
    source_duration_ms: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.index, numbers.Integral) or isinstance(self.index, bool) or self.index < 0:
            raise ValueError(f"index must be a non-negative integer, got {self.index!r}")
        self.index = int(self.index)
        if not isinstance(self.prediction, str):
            raise TypeError(f"prediction must be a string, got {type(self.prediction).__name__}")
        self.delays = _timestamps(self.delays, "delays")
        self.elapsed = _timestamps([] if self.elapsed is None else self.elapsed, "elapsed")
        if self.elapsed and len(self.elapsed) != len(self.delays):
            raise ValueError(
                f"elapsed has {len(self.elapsed)} values but delays has {len(self.delays)}; "
                "give one per target unit or none"
            )
        _source_length(self.source_length)
        if self.reference is not None and not isinstance(self.reference, str):
            raise TypeError(f"reference must be a string or None, got {type(self.reference).__name__}")
        self.reference_length = _reference_length(self.reference_length)
        if self.source_duration_ms is not None:
            _source_length(self.source_duration_ms, "source_duration_ms")
        if not isinstance(self.extra, dict):
            raise TypeError(f"extra must be a dict, got {type(self.extra).__name__}")
        clash = set(self.extra) & (set(SIMULEVAL_KEYS) | set(OPTIONAL_KEYS))
        if clash:
            raise ValueError(f"extra repeats record keys: {sorted(clash)}")

    @property
    def prediction_length(self) -> int:
        """Number of target units (SimulEval: ``len(prediction_list)``, one delay each)."""
        return len(self.delays)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this record, in SimulEval's key order."""
        out: dict[str, Any] = {
            "index": self.index,
            "prediction": self.prediction,
            "delays": list(self.delays),
            "elapsed": list(self.elapsed),
            "prediction_length": self.prediction_length,
            "reference": self.reference,
            "source": self.source,
            "source_length": self.source_length,
        }
        if self.reference_length is not None:
            out["reference_length"] = self.reference_length
        if self.source_duration_ms is not None:
            out["source_duration_ms"] = self.source_duration_ms
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> InstanceRecord:
        """A record from a JSON object (a parsed line); raises ValueError/TypeError naming the key."""
        if not isinstance(obj, Mapping):
            raise TypeError(f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise ValueError(f"missing key(s) {missing}")
        known = set(SIMULEVAL_KEYS) | set(OPTIONAL_KEYS)
        record = cls(
            index=obj["index"],
            prediction=obj["prediction"],
            delays=obj["delays"],
            source_length=obj["source_length"],
            elapsed=[] if obj.get("elapsed") is None else obj["elapsed"],
            reference=obj.get("reference"),
            source=obj.get("source"),
            reference_length=obj.get("reference_length"),
            source_duration_ms=obj.get("source_duration_ms"),
            extra={k: v for k, v in obj.items() if k not in known},
        )
        n = obj.get("prediction_length")
        if n is not None and n != record.prediction_length:
            raise ValueError(f"prediction_length is {n!r} but delays has {record.prediction_length} values")
        return record


def _as_record(instance: Any) -> InstanceRecord:
    if isinstance(instance, InstanceRecord):
        return instance
    if isinstance(instance, Mapping):
        return InstanceRecord.from_json(instance)
    raise TypeError(f"expected an InstanceRecord or a mapping, got {type(instance).__name__}")


def _records(instances: Iterable[Any]) -> list[InstanceRecord]:
    out: list[InstanceRecord] = []
    seen: dict[int, int] = {}
    for position, ins in enumerate(instances):
        try:
            record = _as_record(ins)
        except (TypeError, ValueError) as err:
            raise type(err)(f"instances[{position}]: {err}") from None
        if record.index in seen:
            raise ValueError(f"instances[{position}]: index {record.index} repeats instances[{seen[record.index]}]")
        seen[record.index] = position
        out.append(record)
    return out


def _line(record: InstanceRecord) -> str:
    return json.dumps(record.to_json(), ensure_ascii=False, allow_nan=False) + "\n"


def write_instances(path: str | Path, instances: Iterable[Any], *, append: bool = False) -> Path:
    """Write ``instances`` (records or mappings with their keys) to ``path`` as
    SimulEval's ``instances.log``, one JSON line each.

    The file is replaced atomically; ``append=True`` appends instead (as
    SimulEval does after each instance, so that a long run can resume),
    without checking indices against lines already in the file.
    Raises ValueError/TypeError naming the bad instance; indices must be unique.
    """
    records = _records(instances)
    text = "".join(_line(r) for r in records)
    path = Path(path)
    if append:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    else:
        atomic_write_text(path, text)
    logger.info("wrote %d instances to %s", len(records), path)
    return path


def read_instances(path: str | Path) -> list[InstanceRecord]:
    """Read ``instances.log`` (SimulEval's or ours) into records, in file order.

    Blank lines are skipped. Every other line must be a JSON object with at
    least ``index``, ``prediction``, ``delays`` and ``source_length``;
    ``prediction_length`` (when present) must equal the number of delays,
    ``elapsed`` must be empty or as long as ``delays``, and indices must be
    unique. Raises ValueError ``"<path>:<line>: <what is wrong>"`` otherwise.
    """
    path = Path(path)
    records: list[InstanceRecord] = []
    first_line: dict[int, int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
            try:
                record = InstanceRecord.from_json(obj)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}:{lineno}: {err}") from None
            if record.index in first_line:
                raise ValueError(
                    f"{path}:{lineno}: index {record.index} repeats line {first_line[record.index]}"
                )
            first_line[record.index] = lineno
            records.append(record)
    return records


def _check_bleu(bleu: Any) -> float | None:
    if bleu is None:
        return None
    if not _is_real(bleu) or not math.isfinite(bleu):
        raise ValueError(f"bleu must be a finite number or None, got {bleu!r}")
    return float(bleu)


def compute_scores(instances: Iterable[Any], bleu: float | None = None, *, use_ref_len: bool = True) -> dict[str, float]:
    """The ``scores.json`` object of ``instances``: ``BLEU`` (when given) then
    :func:`~leapformer.eval.corpus_latency` of the instances."""
    bleu = _check_bleu(bleu)
    out: dict[str, float] = {} if bleu is None else {"BLEU": bleu}
    out.update(corpus_latency(_records(instances), use_ref_len=use_ref_len))
    return out


def write_scores(
    path: str | Path, instances: Iterable[Any], bleu: float | None = None, *, use_ref_len: bool = True
) -> dict[str, float]:
    """Compute :func:`compute_scores` of ``instances`` and write them to ``path`` (``scores.json``); returns them."""
    result = compute_scores(instances, bleu, use_ref_len=use_ref_len)
    atomic_write_text(path, json.dumps(result, indent=2, allow_nan=False) + "\n")
    logger.info("wrote scores to %s: %s", path, result)
    return result


def scores_from_log(path: str | Path, bleu: float | None = None, *, use_ref_len: bool = True) -> dict[str, float]:
    """Recompute the scores from an ``instances.log`` (SimulEval's ``--score-only``);
    BLEU is not computed here and appears only when given."""
    return compute_scores(read_instances(path), bleu, use_ref_len=use_ref_len)
