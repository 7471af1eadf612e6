"""SimulEval-compatible output: ``instances.log``, ``config.yaml`` and ``scores.json``.

A folder written here is rescored by SimulEval 1.1.4 itself with the same
AL, LAAL, AP and DAL as the project's ``scores.json``::

    simuleval --score-only --output DIR --latency-metrics AL LAAL AP DAL \\
        --eval-latency-unit UNIT [--eval-latency-spm-model MODEL]

``instances.log`` holds one JSON object per line, one line per instance, with
the keys SimulEval's ``Instance.summarize()`` writes for text output
(``simuleval/evaluator/instance.py``), in its order::

    {"index": 0, "prediction": "a b c", "delays": [2, 3, 4], "elapsed": [...],
     "prediction_length": 3, "reference": "a b c d", "source": "w x y z",
     "source_length": 4}

and one optional key of this project, written only when set:
``source_duration_ms`` (the source length in the unit of ``elapsed``, for the
computation-aware scores of text input; see
:func:`~leapformer.eval.computation_aware_scores`). SimulEval's ``LogInstance``
keeps it as a plain attribute that no scorer reads. Other keys found in a log
(e.g. SimulEval 1.0's ``metric``) are kept in :attr:`InstanceRecord.extra`.

The reference length ``|Y*|`` is never written: SimulEval's ``LogInstance``
has a read-only ``reference_length`` property (a log line with that key makes
it fail) that counts the ``reference`` in the *latency unit* of the
``--score-only`` run (``--eval-latency-unit``, :data:`~leapformer.eval.simuleval_config.LATENCY_UNITS`):

* ``word`` (SimulEval's default): ``len(reference.split(" "))``;
* ``char``: ``len(reference.strip())``;
* ``spm``: the pieces of a SentencePiece model (``--eval-latency-spm-model``).

The project counts it the same way
(:func:`~leapformer.eval.simuleval_config.count_reference`), so the unit must
be the unit of the target units behind ``delays`` -- e.g. ``spm`` with the
target SentencePiece model when one delay is logged per target subword. A
Japanese reference in the word unit is one "word" (no spaces), the reason a
log scored with the default unit gets a hugely negative AL.
``InstanceRecord.reference_length``, when set, must equal that count;
:func:`write_instances` checks it.

``config.yaml`` (next to ``instances.log``; ``--score-only`` requires it)
holds ``source_type`` and ``target_type`` (``text`` / ``speech``), the only
keys SimulEval reads, then ``eval_latency_unit`` and, for ``spm``,
``eval_latency_spm_model`` (an absolute path): the options to pass to
SimulEval, read back by :func:`read_instances`
(:mod:`leapformer.eval.simuleval_config`). Only the two ``*_type`` keys
affect SimulEval; it takes the unit from its command line alone. SimulEval
1.1.4's ``--score-only`` rewrites ``config.yaml`` with just
``source_type`` and ``target_type`` (set to the *source* type, a SimulEval
slip), so after such a run the unit must be given to :func:`read_instances` /
:func:`scores_from_log` again (without it they count words, as SimulEval does).

SimulEval's computation-aware scores of a *text* log are not the project's
``_CA`` scores: it divides ``elapsed`` (ms) by ``source_length`` (tokens),
while the project uses ``source_duration_ms``. For speech both are ms and
agree.

``scores.json`` is one flat JSON object: ``BLEU`` (given by the caller), then
``AL``, ``LAAL``, ``AP``, ``DAL`` and, when the log has elapsed times, their
computation-aware variants ``AL_CA`` ... ``DAL_CA`` -- the names of
SimulEval's ``scores.tsv`` columns. Values are not rounded (SimulEval rounds
its table to three decimals), so the file equals :func:`scores_from_log`
exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
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
from leapformer.eval.simuleval_config import (
    log_latency_unit,
    reference_counter,
    write_config,
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
OPTIONAL_KEYS = ("source_duration_ms",)
LEGACY_KEYS = ("reference_length",)
"""Read from logs written before the latency unit (SimulEval cannot read them); never written."""
_REQUIRED = ("index", "prediction", "delays", "source_length")


# --- records --------------------------------------------------------------------------------


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
        reference_length: ``|Y*|``. Not written to the log: SimulEval counts
            the reference in the latency unit (``simuleval_config.count_reference``).
            None counts it so when scoring; a value must equal that count
            (checked by :func:`write_instances`). :func:`read_instances`
            fills it in.
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
        clash = set(self.extra) & (set(SIMULEVAL_KEYS) | set(OPTIONAL_KEYS) | set(LEGACY_KEYS))
        if clash:
            raise ValueError(f"extra repeats record keys: {sorted(clash)}")

    @property
    def prediction_length(self) -> int:
        """Number of target units (SimulEval: ``len(prediction_list)``, one delay each)."""
        return len(self.delays)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this record, in SimulEval's key order (no ``reference_length``)."""
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
        if self.source_duration_ms is not None:
            out["source_duration_ms"] = self.source_duration_ms
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> InstanceRecord:
        """A record from a JSON object (a parsed line); raises ValueError/TypeError naming the key.

        ``reference_length`` is taken from the legacy key when present, else left None.
        """
        if not isinstance(obj, Mapping):
            raise TypeError(f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise ValueError(f"missing key(s) {missing}")
        known = set(SIMULEVAL_KEYS) | set(OPTIONAL_KEYS) | set(LEGACY_KEYS)
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


def _with_reference_length(record: InstanceRecord, count: Callable[[str], int]) -> InstanceRecord:
    """``record`` with ``reference_length`` = the unit count of its reference (SimulEval's
    ``|Y*|``); raises ValueError when an explicit value disagrees or SimulEval cannot score it."""
    if record.reference is None:
        if record.reference_length is not None:
            raise ValueError(f"reference_length is {record.reference_length} but reference is None: "
                             "SimulEval scores an instance without reference against its hypothesis length")
        return record
    n = count(record.reference)
    if n < 1:
        raise ValueError(f"reference {record.reference!r} has no unit in the latency unit: "
                         "SimulEval cannot score it (it divides by the reference length)")
    if record.reference_length is None:
        return dataclasses.replace(record, reference_length=n)
    if record.reference_length != n:
        raise ValueError(f"reference_length is {record.reference_length} but SimulEval counts {n} "
                         "units in the reference with this latency unit")
    return record


def _records(instances: Iterable[Any], count: Callable[[str], int] | None = None) -> list[InstanceRecord]:
    out: list[InstanceRecord] = []
    seen: dict[int, int] = {}
    for position, ins in enumerate(instances):
        try:
            record = _as_record(ins)
            if count is not None:
                record = _with_reference_length(record, count)
        except (TypeError, ValueError) as err:
            raise type(err)(f"instances[{position}]: {err}") from None
        if record.index in seen:
            raise ValueError(f"instances[{position}]: index {record.index} repeats instances[{seen[record.index]}]")
        seen[record.index] = position
        out.append(record)
    return out


def _line(record: InstanceRecord) -> str:
    return json.dumps(record.to_json(), ensure_ascii=False, allow_nan=False) + "\n"


def write_instances(
    path: str | Path,
    instances: Iterable[Any],
    *,
    append: bool = False,
    latency_unit: str = "word",
    spm_model: str | Path | None = None,
    source_type: str = "text",
    target_type: str = "text",
) -> Path:
    """Write ``instances`` (records or mappings with their keys) to ``path`` as
    SimulEval's ``instances.log``, one JSON line each, and the ``config.yaml``
    that SimulEval's ``--score-only`` needs next to it
    (:func:`~leapformer.eval.simuleval_config.write_config`).

    ``latency_unit`` / ``spm_model``: the unit of the target units behind the
    delays, in which SimulEval counts each reference (module docstring); a
    record's ``reference_length``, when set, must equal that count.

    The files are replaced atomically; ``append=True`` appends to the log
    instead (as SimulEval does after each instance, so that a long run can
    resume), without checking indices against lines already in the file.
    Raises ValueError/TypeError naming the bad instance; indices must be unique.
    Nothing is written on error.
    """
    records = _records(instances, reference_counter(latency_unit, spm_model))
    path = Path(path)
    write_config(path.parent, source_type=source_type, target_type=target_type,
                 latency_unit=latency_unit, spm_model=spm_model)
    text = "".join(_line(r) for r in records)
    if append:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    else:
        atomic_write_text(path, text)
    logger.info("wrote %d instances to %s (latency unit %s)", len(records), path, latency_unit)
    return path


def read_instances(
    path: str | Path, *, latency_unit: str | None = None, spm_model: str | Path | None = None
) -> list[InstanceRecord]:
    """Read ``instances.log`` (SimulEval's or ours) into records, in file order.

    Blank lines are skipped. Every other line must be a JSON object with at
    least ``index``, ``prediction``, ``delays`` and ``source_length``;
    ``prediction_length`` (when present) must equal the number of delays,
    ``elapsed`` must be empty or as long as ``delays``, and indices must be
    unique. Raises ValueError ``"<path>:<line>: <what is wrong>"`` otherwise.

    Each record's ``reference_length`` is its reference counted in the
    latency unit: ``latency_unit`` / ``spm_model`` when given, else the
    ``eval_latency_unit`` of the ``config.yaml`` next to the log, else
    ``word`` (SimulEval's default). A legacy ``reference_length`` key is kept
    as it is.
    """
    path = Path(path)
    count = reference_counter(*log_latency_unit(path.parent, latency_unit, spm_model))
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
                if record.reference is not None and record.reference_length is None:
                    record = _with_reference_length(record, count)
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


def compute_scores(
    instances: Iterable[Any],
    bleu: float | None = None,
    *,
    use_ref_len: bool = True,
    latency_unit: str = "word",
    spm_model: str | Path | None = None,
) -> dict[str, float]:
    """The ``scores.json`` object of ``instances``: ``BLEU`` (when given) then
    :func:`~leapformer.eval.corpus_latency` of the instances, the reference
    lengths counted in ``latency_unit`` (as :func:`write_instances`)."""
    bleu = _check_bleu(bleu)
    records = _records(instances, reference_counter(latency_unit, spm_model))
    out: dict[str, float] = {} if bleu is None else {"BLEU": bleu}
    out.update(corpus_latency(records, use_ref_len=use_ref_len))
    return out


def write_scores(
    path: str | Path,
    instances: Iterable[Any],
    bleu: float | None = None,
    *,
    use_ref_len: bool = True,
    latency_unit: str = "word",
    spm_model: str | Path | None = None,
) -> dict[str, float]:
    """Compute :func:`compute_scores` of ``instances`` and write them to ``path`` (``scores.json``); returns them."""
    result = compute_scores(instances, bleu, use_ref_len=use_ref_len, latency_unit=latency_unit,
                            spm_model=spm_model)
    atomic_write_text(path, json.dumps(result, indent=2, allow_nan=False) + "\n")
    logger.info("wrote scores to %s: %s", path, result)
    return result


def scores_from_log(
    path: str | Path,
    bleu: float | None = None,
    *,
    use_ref_len: bool = True,
    latency_unit: str | None = None,
    spm_model: str | Path | None = None,
) -> dict[str, float]:
    """Recompute the scores from an ``instances.log`` (SimulEval's ``--score-only``), the
    latency unit chosen as in :func:`read_instances`; BLEU is not computed here and
    appears only when given."""
    records = read_instances(path, latency_unit=latency_unit, spm_model=spm_model)
    bleu = _check_bleu(bleu)
    out: dict[str, float] = {} if bleu is None else {"BLEU": bleu}
    out.update(corpus_latency(records, use_ref_len=use_ref_len))
    return out
