"""The LJ Speech corpus (Ito and Johnson 2017) in its release layout::

    LJSpeech-1.1/
        metadata.csv       LJ001-0001|original text|normalised text   (no header)
        wavs/LJ001-0001.wav  22,050 Hz mono 16-bit, one per row

Fields are separated by ``|`` and never quoted (the texts hold ``"``
characters). :func:`read_ljspeech` returns one
:class:`~leapformer.data.speech.manifest.SpeechItem` per row (the whole
file: offset 0, ``n_frames`` from its header) with the chosen text
(``"normalized"``, numbers and abbreviations spelt out, the TTS input by
convention; or ``"original"``) as both ``src_text`` and ``tgt_text``, the
layout of an ASR manifest. The release has no official split. Errors name
the file and the 1-based line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from leapformer.data.speech.manifest import SpeechItem

log = logging.getLogger(__name__)

__all__ = ["LJSPEECH_RATE", "read_ljspeech"]

LJSPEECH_RATE = 22050


def read_ljspeech(root: str | Path, *, text: str = "normalized",
                  max_items: int | None = None) -> list[SpeechItem]:
    """The utterances of an LJ Speech folder (see the module docstring), in the order of
    ``metadata.csv``; ``max_items`` stops after that many rows."""
    if text not in ("normalized", "original"):
        raise ValueError(f"text must be 'normalized' or 'original', got {text!r}")
    if max_items is not None and (isinstance(max_items, bool) or
                                  not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be None or a positive int, got {max_items!r}")
    root = Path(root)
    meta = root / "metadata.csv"
    if not root.is_dir():
        raise FileNotFoundError(f"LJ Speech folder {root} does not exist")
    if not meta.is_file():
        raise FileNotFoundError(f"LJ Speech file {meta} not found")
    try:
        import soundfile as sf
    except ModuleNotFoundError:
        raise ModuleNotFoundError("reading LJ Speech needs soundfile (pip install "
                                  "'leapformer[speech]')") from None
    try:
        lines = meta.read_text(encoding="utf-8-sig").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{meta}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if lines and lines[-1] == "":
        lines.pop()
    items, seen = [], {}
    for line, row in enumerate(lines, start=1):
        row = row.rstrip("\r")
        fields = row.split("|")
        if len(fields) != 3:
            raise ValueError(f"{meta}:{line}: expected 3 '|'-separated fields (id|original|"
                             f"normalized), got {len(fields)}")
        uid, original, normalized = (f.strip() for f in fields)
        if not uid:
            raise ValueError(f"{meta}:{line}: empty id")
        if uid in seen:
            raise ValueError(f"{meta}:{line}: id {uid!r} already on line {seen[uid]}")
        seen[uid] = line
        chosen = normalized if text == "normalized" else original
        if not chosen:
            raise ValueError(f"{meta}:{line}: empty {text} text")
        wav = root / "wavs" / f"{uid}.wav"
        if not wav.is_file():
            raise FileNotFoundError(f"{meta}:{line}: wav file {wav} not found")
        try:
            frames = int(sf.info(os.fspath(wav)).frames)
        except RuntimeError as err:
            raise ValueError(f"{meta}:{line}: {wav} is not readable audio ({err})") from None
        if frames < 1:
            raise ValueError(f"{meta}:{line}: {wav} holds no samples")
        items.append(SpeechItem(uid, wav, 0, frames, chosen, chosen))
        if max_items is not None and len(items) == max_items:
            break
    if not items:
        raise ValueError(f"{meta}:1: no utterances")
    log.info("LJ Speech: %d utterances from %s", len(items), root)
    return items
