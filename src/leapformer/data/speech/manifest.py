"""The generic speech manifest: one TSV row per utterance, and audio reading.

**Format** (UTF-8, tab-separated, a header row then one row per utterance)::

    id  audio  offset  n_frames  src_text  tgt_text

- ``id``: unique, non-empty;
- ``audio``: a ``.wav`` (or any file ``soundfile`` reads) -- a relative path
  is relative to the manifest's folder;
- ``offset``, ``n_frames``: the utterance is ``n_frames`` samples from sample
  ``offset`` of that file (at the file's own rate; a whole file has offset 0),
  as fairseq's ``path:offset:n_frames`` audio references count them;
- ``src_text``: the transcript; ``tgt_text``: the translation (equal to the
  transcript in an ASR manifest).

Texts hold no tab or line break. Every reading error names the file and the
1-based line. :func:`read_manifest` returns :class:`SpeechItem` rows with the
audio path joined to the manifest's folder (usable from the working directory);
:func:`write_manifest` writes them (atomically) with paths made relative to the
manifest where they lie under its folder;
:func:`load_audio` reads one utterance as float32 samples in [-1, 1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leapformer._io import atomic_open

log = logging.getLogger(__name__)

__all__ = ["MANIFEST_COLUMNS", "SpeechItem", "load_audio", "read_manifest", "write_manifest"]

MANIFEST_COLUMNS = ("id", "audio", "offset", "n_frames", "src_text", "tgt_text")


@dataclass(frozen=True, slots=True)
class SpeechItem:
    """One utterance: samples ``offset .. offset + n_frames - 1`` of ``audio``."""

    id: str
    audio: Path
    offset: int
    n_frames: int
    src_text: str
    tgt_text: str


def _count(path: Path, line: int, name: str, value: str, minimum: int) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < minimum:
        raise ValueError(f"{path}:{line}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def read_manifest(path: str | Path) -> list[SpeechItem]:
    """The utterances of a manifest TSV (see the module docstring). Raises
    ``FileNotFoundError`` for a missing manifest and ``ValueError("<file>:<line>:
    ...")`` for a wrong header, a wrong column count, a bad number, an empty id or
    text, a repeated id; audio files are checked by :func:`load_audio`, not here."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"{path}:1: empty file (expected the header "
                         f"{chr(9).join(MANIFEST_COLUMNS)!r})")
    header = tuple(lines[0].rstrip("\r").split("\t"))
    if header != MANIFEST_COLUMNS:
        raise ValueError(f"{path}:1: header must be {' '.join(MANIFEST_COLUMNS)} "
                         f"(tab-separated), got {' '.join(header)!r}")
    items, seen = [], {}
    for line, row in enumerate(lines[1:], start=2):
        row = row.rstrip("\r")
        if not row.strip():
            raise ValueError(f"{path}:{line}: empty line")
        fields = row.split("\t")
        if len(fields) != len(MANIFEST_COLUMNS):
            raise ValueError(f"{path}:{line}: expected {len(MANIFEST_COLUMNS)} tab-separated "
                             f"columns, got {len(fields)}")
        uid, audio, offset, n_frames, src, tgt = fields
        for name, value in (("id", uid), ("audio", audio), ("src_text", src),
                            ("tgt_text", tgt)):
            if not value.strip():
                raise ValueError(f"{path}:{line}: empty {name}")
        if uid in seen:
            raise ValueError(f"{path}:{line}: id {uid!r} already on line {seen[uid]}")
        seen[uid] = line
        audio_path = Path(audio)
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        items.append(SpeechItem(uid, audio_path, _count(path, line, "offset", offset, 0),
                                _count(path, line, "n_frames", n_frames, 1), src, tgt))
    if not items:
        raise ValueError(f"{path}:2: no utterances after the header")
    log.debug("read %d utterances from %s", len(items), path)
    return items


def write_manifest(items: Iterable[SpeechItem], path: str | Path) -> Path:
    """Write ``items`` as a manifest TSV (atomically). An item's relative audio path is
    relative to the working directory (as :func:`read_manifest` returns them) when the
    file is there, else to the manifest's folder (the meaning before 2026-12); paths under
    the manifest's folder are written relative to it, the others absolute. Raises
    ``ValueError`` for an empty list, a repeated or empty id, or a field holding a tab or
    line break."""
    path = Path(path)
    root = path.parent.resolve()
    rows, seen = [], set()
    for i, it in enumerate(items):
        if not isinstance(it, SpeechItem):
            raise TypeError(f"items[{i}] must be a SpeechItem, got {type(it).__name__}")
        if it.id in seen:
            raise ValueError(f"items[{i}]: id {it.id!r} appears twice")
        seen.add(it.id)
        audio = Path(it.audio)
        resolved = audio.resolve()
        if not audio.is_absolute() and not resolved.exists() and (path.parent / audio).exists():
            resolved = (path.parent / audio).resolve()
        try:
            audio_text = resolved.relative_to(root).as_posix()
        except ValueError:
            audio_text = str(resolved)
        if isinstance(it.offset, bool) or not isinstance(it.offset, int) or it.offset < 0 or \
                isinstance(it.n_frames, bool) or not isinstance(it.n_frames, int) or \
                it.n_frames < 1:
            raise ValueError(f"items[{i}] ({it.id}): offset must be an int >= 0 and n_frames "
                             f"an int >= 1, got {it.offset!r}, {it.n_frames!r}")
        fields = (it.id, audio_text, str(it.offset), str(it.n_frames), it.src_text, it.tgt_text)
        for name, value in zip(MANIFEST_COLUMNS, fields):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"items[{i}] ({it.id}): empty {name}")
            if any(c in value for c in "\t\r\n"):
                raise ValueError(f"items[{i}] ({it.id}): {name} holds a tab or line break")
        rows.append("\t".join(fields))
    if not rows:
        raise ValueError("items is empty: nothing to write")
    with atomic_open(path, binary=False) as fh:
        fh.write("\t".join(MANIFEST_COLUMNS) + "\n" + "".join(r + "\n" for r in rows))
    return path


def load_audio(item: SpeechItem, *, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """``(samples, rate)`` of one utterance: float32 mono in [-1, 1) (channels are
    averaged). ``sample_rate``: raise ``ValueError`` if the file has another rate.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` when the
    utterance runs past the end of the file."""
    try:
        import soundfile as sf
    except ModuleNotFoundError:
        raise ModuleNotFoundError("reading audio needs soundfile (pip install "
                                  "'leapformer[speech]')") from None
    path = Path(item.audio)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} of utterance {item.id!r} not found")
    info = sf.info(os.fspath(path))
    if sample_rate is not None and info.samplerate != sample_rate:
        raise ValueError(f"{path}: sample rate {info.samplerate} Hz, expected {sample_rate}")
    if item.offset + item.n_frames > info.frames:
        raise ValueError(f"{path}: utterance {item.id!r} needs samples {item.offset}.."
                         f"{item.offset + item.n_frames - 1} but the file has {info.frames}")
    data, rate = sf.read(os.fspath(path), start=item.offset, frames=item.n_frames,
                         dtype="float32", always_2d=True)
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0], int(rate)
