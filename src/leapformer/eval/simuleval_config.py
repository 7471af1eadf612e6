"""SimulEval's latency unit and ``config.yaml`` for the files of
:mod:`leapformer.eval.simuleval_log` (see its docstring).

``count_reference`` counts a reference as SimulEval 1.1.4's
``LogInstance.reference_length`` does in each ``--eval-latency-unit``
(``simuleval/evaluator/instance.py``); ``write_config`` / ``read_config``
write and read the flat ``config.yaml`` that ``simuleval --score-only
--output DIR`` requires in ``DIR``; ``simuleval_command`` is that command
with the latency unit spelled out.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leapformer._io import atomic_write_text

logger = logging.getLogger(__name__)

CONFIG_YAML = "config.yaml"

LATENCY_UNITS = ("word", "char", "spm")
"""SimulEval's ``--eval-latency-unit`` choices."""
IO_TYPES = ("text", "speech")
"""SimulEval's ``source_type`` / ``target_type`` values."""


# --- latency unit ---------------------------------------------------------------------------


def check_latency_unit(latency_unit: Any, spm_model: Any) -> None:
    """Raise ValueError/TypeError/FileNotFoundError (naming the argument) unless
    ``latency_unit`` is one of :data:`LATENCY_UNITS` and ``spm_model`` is an
    existing file exactly when the unit is ``spm``."""
    if latency_unit not in LATENCY_UNITS:
        raise ValueError(f"latency_unit must be one of {LATENCY_UNITS}, got {latency_unit!r}")
    if latency_unit == "spm":
        if spm_model is None:
            raise ValueError("latency_unit='spm' needs spm_model, the SentencePiece model file "
                             "(SimulEval's --eval-latency-spm-model)")
        if not isinstance(spm_model, (str, Path)):
            raise TypeError(f"spm_model must be a path, got {type(spm_model).__name__}")
        if not Path(spm_model).is_file():
            raise FileNotFoundError(f"spm_model: no SentencePiece model at {spm_model}")
    elif spm_model is not None:
        raise ValueError(f"spm_model is only used with latency_unit='spm', got latency_unit={latency_unit!r}")


def reference_counter(latency_unit: str = "word", spm_model: str | Path | None = None) -> Callable[[str], int]:
    """``reference -> |Y*|`` in ``latency_unit``, as SimulEval's ``LogInstance.reference_length``."""
    check_latency_unit(latency_unit, spm_model)
    if latency_unit == "word":
        return lambda reference: len(reference.split(" "))
    if latency_unit == "char":
        return lambda reference: len(reference.strip())
    try:
        import sentencepiece
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("latency_unit='spm' needs sentencepiece (pip install sentencepiece)") from err
    try:
        model = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    except (RuntimeError, OSError) as err:
        raise ValueError(f"spm_model: {spm_model} is not a SentencePiece model: {err}") from None
    return lambda reference: len(model.encode(reference, out_type=str))


def count_reference(reference: str, latency_unit: str = "word", spm_model: str | Path | None = None) -> int:
    """``|Y*|``: the units of ``reference`` as SimulEval's ``LogInstance.reference_length``
    counts them with ``--eval-latency-unit latency_unit`` (module docstring)."""
    if not isinstance(reference, str):
        raise TypeError(f"reference must be a string, got {type(reference).__name__}")
    return reference_counter(latency_unit, spm_model)(reference)


# --- config.yaml ----------------------------------------------------------------------------


def write_config(
    folder: str | Path,
    *,
    source_type: str = "text",
    target_type: str = "text",
    latency_unit: str = "word",
    spm_model: str | Path | None = None,
) -> Path:
    """Write ``folder/config.yaml`` for SimulEval's ``--score-only`` (module docstring); returns its path.

    Values are written as JSON strings, which YAML reads as they are.
    """
    for name, value in (("source_type", source_type), ("target_type", target_type)):
        if value not in IO_TYPES:
            raise ValueError(f"{name} must be one of {IO_TYPES}, got {value!r}")
    check_latency_unit(latency_unit, spm_model)
    values = {"source_type": source_type, "target_type": target_type, "eval_latency_unit": latency_unit}
    if spm_model is not None:
        values["eval_latency_spm_model"] = str(Path(spm_model).resolve())
    text = "".join(f"{key}: {json.dumps(value, ensure_ascii=False)}\n" for key, value in values.items())
    return atomic_write_text(Path(folder) / CONFIG_YAML, text)


def _scalar(text: str) -> str | None:
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise ValueError(f"unterminated quoted value {text}")
        return text[1:-1].replace("''", "'")
    return text


def read_config(folder: str | Path) -> dict[str, str | None]:
    """The flat ``key: value`` mapping of ``folder/config.yaml`` ({} when there is none).

    Reads what :func:`write_config` and SimulEval (``yaml.dump`` of a flat
    mapping of strings) write: plain, single- or double-quoted scalars.
    Raises ValueError ``"<path>:<line>: ..."`` on anything else.
    """
    path = Path(folder) / CONFIG_YAML
    if not path.is_file():
        return {}
    out: dict[str, str | None] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or line[0].isspace() or not key.strip() or (value and not value[0].isspace()):
            raise ValueError(f"{path}:{lineno}: expected a flat 'key: value' line, got {line!r}")
        try:
            out[key.strip()] = _scalar(value.strip())
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: {err}") from None
    return out


def log_latency_unit(folder: Path, latency_unit: str | None, spm_model: str | Path | None) -> tuple[str, Any]:
    """The latency unit to read a log with: the arguments, else ``config.yaml``, else ``word``."""
    if latency_unit is not None:
        return latency_unit, spm_model
    if spm_model is not None:
        raise ValueError("spm_model is given without latency_unit")
    config = read_config(folder)
    if "eval_latency_unit" not in config:
        if config:
            logger.warning("%s has no eval_latency_unit (SimulEval's --score-only rewrites it): "
                           "counting references in words, SimulEval's default", folder / CONFIG_YAML)
        return "word", None
    unit, model = config["eval_latency_unit"], config.get("eval_latency_spm_model")
    try:
        check_latency_unit(unit, model)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise type(err)(f"{folder / CONFIG_YAML}: {err}") from None
    return unit, model


def simuleval_command(
    output: str | Path,
    *,
    latency_unit: str = "word",
    spm_model: str | Path | None = None,
    sacrebleu_tokenizer: str | None = None,
) -> str:
    """The SimulEval 1.1.4 shell command that rescores the folder ``output``
    (``instances.log`` + ``config.yaml``) with the latency unit made explicit:
    AL, LAAL, AP and DAL, and SimulEval's default quality metric BLEU (with
    ``sacrebleu_tokenizer`` when given, else sacreBLEU's default ``13a``)."""
    check_latency_unit(latency_unit, spm_model)
    words = ["simuleval", "--score-only", "--output", str(Path(output).resolve()),
             "--latency-metrics", "AL", "LAAL", "AP", "DAL", "--eval-latency-unit", latency_unit]
    if spm_model is not None:
        words += ["--eval-latency-spm-model", str(Path(spm_model).resolve())]
    if sacrebleu_tokenizer is not None:
        words += ["--sacrebleu-tokenizer", sacrebleu_tokenizer]
    return shlex.join(words)
