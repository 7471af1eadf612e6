"""The MuST-C corpus (Di Gangi et al. 2019) in its official release layout::

    en-XX/data/{train,dev,tst-COMMON,tst-HE}/
        txt/<split>.yaml   one entry per segment, in talk order:
                           - {duration: 3.5, offset: 16.09, rW: 7, uW: 0,
                              speaker_id: spk.1, wav: ted_1.wav}
        txt/<split>.en     the English transcript of segment i on line i
        txt/<split>.XX     its translation on line i
        wav/<talk>.wav     one 16 kHz mono file per TED talk

:func:`read_mustc` cuts every talk into its segments (``offset`` and
``duration`` in seconds) and returns :class:`~leapformer.data.speech.manifest.SpeechItem`
rows: id ``<talk>_<i>`` (``i`` counts the talk's segments from 0),
``offset = int(offset * rate)`` and ``n_frames = int(duration * rate)``
samples, as fairseq's MuST-C preparation computes them. Errors are one line
naming the file and the 1-based line: a missing folder or file, a yaml that
is not a list of such entries, a missing or non-numeric key, line counts that
differ between the yaml and the two text files, a talk's wav that is missing
or a segment that starts after its end (or ends more than
:data:`END_TOLERANCE_S` after it; a smaller overrun is clipped, as the
official segments sometimes slightly overrun the audio).

The yaml is read by PyYAML, except in the official layout (one flow mapping
of plain scalars per line), which a line-by-line reader takes ~20x faster
with the same values (a train split holds ~230k segments; PyYAML reads about
5k a second); any other form goes to PyYAML.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from leapformer.data.speech.manifest import SpeechItem

log = logging.getLogger(__name__)

__all__ = ["END_TOLERANCE_S", "MUSTC_SPLITS", "mustc_dir", "read_mustc"]

MUSTC_SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")
END_TOLERANCE_S = 1.0
_PAIR = re.compile(r"^en-([A-Za-z]{2,3})$")
_KEYS = ("duration", "offset", "wav")
# the official one-line entries: a flow mapping of plain scalars per line
_FLOW_LINE = re.compile(r"^- \{([^{}\[\]\"'#&*!|>%@`?]*)\}[ \t]*\r?$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[-+]?[0-9]+\.[0-9]*([eE][-+][0-9]+)?$")
_SPECIAL = {"~", "null", "true", "false", "yes", "no", "on", "off"}


def mustc_dir(root: str | Path, tgt_lang: str | None = None) -> tuple[Path, str]:
    """``(en-XX folder, XX)``: ``root`` is that folder itself or the folder holding it
    (then ``tgt_lang`` is required)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MuST-C folder {root} does not exist")
    m = _PAIR.match(root.name)
    if m:
        if tgt_lang is not None and tgt_lang != m.group(1):
            raise ValueError(f"tgt_lang={tgt_lang!r} but {root} is the en-{m.group(1)} release")
        return root, m.group(1)
    if tgt_lang is None:
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and _PAIR.match(p.name))
        raise ValueError(f"{root} is not an en-XX folder: give tgt_lang (found "
                         f"{', '.join(found) or 'no en-XX folder'})")
    pair = root / f"en-{tgt_lang}"
    if not pair.is_dir():
        raise FileNotFoundError(f"MuST-C folder {pair} does not exist")
    return pair, tgt_lang


def _text_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"MuST-C file {path} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}:{_byte_line(path, err.start)}: not UTF-8 text") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r").strip() for line in lines]


def _byte_line(path: Path, byte: int) -> int:
    """1-based line of byte offset ``byte`` of a file."""
    return path.read_bytes()[:byte].count(b"\n") + 1


def _one_line_entries(text: str) -> list[tuple[int, dict]] | None:
    """The official layout, one flow mapping of plain scalars per line, parsed without
    the YAML library (PyYAML reads ~5k entries/s; a train yaml has ~230k), or ``None``
    when the file is not in exactly that form (then PyYAML reads it)."""
    out = []
    for line, row in enumerate(text.split("\n"), start=1):
        if not row.strip():
            continue
        m = _FLOW_LINE.match(row)
        if not m:
            return None
        entry = {}
        for pair in m.group(1).split(","):
            key, sep, value = pair.partition(":")
            key, value = key.strip(), value.strip()
            if not sep or not _PLAIN_KEY.match(key) or key in entry or not value or \
                    value.lower() in _SPECIAL or ": " in value or value.endswith(":"):
                return None  # not plain, or YAML would give null/bool: let PyYAML decide
            if _INT.match(value):
                entry[key] = int(value)
            elif _FLOAT.match(value):
                entry[key] = float(value)
            elif value[0] in "0123456789+-.":
                return None  # octal, hex, sexagesimal, .inf, 1_000 ...: PyYAML's rules
            else:
                entry[key] = value
        out.append((line, entry))
    return out or None


def _yaml_segments(path: Path) -> list[tuple[int, dict]]:
    """``(1-based line, entry)`` for every entry of a MuST-C yaml file."""
    if not path.is_file():
        raise FileNotFoundError(f"MuST-C file {path} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    fast = _one_line_entries(text)
    pairs = fast if fast is not None else _yaml_pairs(path, text)
    out = []
    for line, entry in pairs:
        if not isinstance(entry, dict):
            raise ValueError(f"{path}:{line}: a segment must be a mapping with keys "
                             f"{', '.join(_KEYS)}, got {type(entry).__name__}")
        for key in _KEYS:
            if key not in entry:
                raise ValueError(f"{path}:{line}: segment has no {key!r}")
        for key in ("duration", "offset"):
            v = entry[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or \
                    (key == "duration" and v == 0):
                raise ValueError(f"{path}:{line}: {key} must be a number "
                                 f"{'> 0' if key == 'duration' else '>= 0'}, got {v!r}")
        if not isinstance(entry["wav"], str) or not entry["wav"].strip():
            raise ValueError(f"{path}:{line}: wav must be a file name, got {entry['wav']!r}")
        out.append((line, entry))
    return out


def _yaml_pairs(path: Path, text: str) -> list[tuple[int, object]]:
    """``(1-based line, entry)`` by PyYAML (any YAML layout)."""
    try:
        import yaml
    except ModuleNotFoundError:
        raise ModuleNotFoundError("reading MuST-C needs PyYAML (pip install pyyaml)") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{mark.line + 1}" if mark is not None else "1"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}:{where}: not valid YAML ({problem})") from None
    finally:
        loader.dispose()
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise ValueError(f"{path}:1: expected a list of segments "
                         "(- {duration: ..., offset: ..., wav: ...})")
    return [(child.start_mark.line + 1, entry) for child, entry in zip(node.value, data)]


def read_mustc(root: str | Path, split: str, *, tgt_lang: str | None = None,
               skip_empty: bool = True) -> list[SpeechItem]:
    """The segments of one split, in the yaml's order (see the module docstring).

    ``root``: the ``en-XX`` folder or its parent (then give ``tgt_lang``).
    ``split``: ``train``, ``dev``, ``tst-COMMON``, ``tst-HE`` (any folder name
    under ``data/`` is accepted). ``skip_empty``: leave out segments whose
    transcript or translation is empty (logged), else keep them.
    """
    pair, lang = mustc_dir(root, tgt_lang)
    if not isinstance(split, str) or not split or "/" in split:
        raise ValueError(f"split must be one of {', '.join(MUSTC_SPLITS)}, got {split!r}")
    base = pair / "data" / split
    if not base.is_dir():
        present = sorted(p.name for p in (pair / "data").iterdir()) \
            if (pair / "data").is_dir() else []
        raise FileNotFoundError(f"MuST-C split folder {base} not found (present: "
                                f"{', '.join(present) or 'none'})")
    txt, wav_dir = base / "txt", base / "wav"
    yaml_path = txt / f"{split}.yaml"
    segments = _yaml_segments(yaml_path)
    texts = {}
    for side in ("en", lang):
        p = txt / f"{split}.{side}"
        texts[side] = _text_lines(p)
        if len(texts[side]) != len(segments):
            last = segments[-1][0] if segments else 1
            raise ValueError(f"{p}:{min(len(texts[side]), len(segments)) + 1}: {p.name} has "
                             f"{len(texts[side])} lines but {yaml_path.name} has "
                             f"{len(segments)} segments (its last on line {last})")
    if not segments:
        raise ValueError(f"{yaml_path}:1: no segments")
    try:
        import soundfile as sf
    except ModuleNotFoundError:
        raise ModuleNotFoundError("reading MuST-C audio needs soundfile (pip install "
                                  "'leapformer[speech]')") from None
    infos: dict[str, tuple[int, int]] = {}
    per_talk: dict[str, int] = {}
    items, empty, clipped = [], 0, 0
    for i, (line, seg) in enumerate(segments):
        name = seg["wav"].strip()
        wav = wav_dir / name
        if name not in infos:
            if not wav.is_file():
                raise FileNotFoundError(f"{yaml_path}:{line}: wav file {wav} not found")
            try:
                info = sf.info(os.fspath(wav))
            except RuntimeError as err:
                raise ValueError(f"{yaml_path}:{line}: {wav} is not readable audio "
                                 f"({err})") from None
            infos[name] = (int(info.samplerate), int(info.frames))
        rate, total = infos[name]
        index = per_talk.get(name, 0)
        per_talk[name] = index + 1
        start = int(float(seg["offset"]) * rate)
        n = int(float(seg["duration"]) * rate)
        if start >= total or start + n > total + END_TOLERANCE_S * rate:
            raise ValueError(f"{yaml_path}:{line}: segment {seg['offset']}+{seg['duration']} s "
                             f"runs past the end of {name} ({total / rate:.3f} s)")
        if start + n > total:
            n, clipped = total - start, clipped + 1
        en, tgt = texts["en"][i], texts[lang][i]
        if not en or not tgt:
            if skip_empty:
                empty += 1
                continue
        items.append(SpeechItem(f"{Path(name).stem}_{index}", wav, start, max(n, 1), en, tgt))
    if empty or clipped:
        log.warning("MuST-C %s %s: %d segments left out for an empty text, %d clipped to "
                    "the end of their audio", pair.name, split, empty, clipped)
    if not items:
        raise ValueError(f"{yaml_path}:1: every segment has an empty text")
    log.info("MuST-C %s %s: %d segments from %d talks", pair.name, split, len(items),
             len(infos))
    return items
