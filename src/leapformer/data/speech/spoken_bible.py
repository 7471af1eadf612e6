"""The spoken Bible: an offline speech stand-in, English WEB verses read by espeak-ng.

:func:`build_spoken_bible` picks verses of the en-ja Bible corpus
(:func:`leapformer.data.parallel.bible_en_ja`: split by book, so the speech
splits hold out the same books as the text translation task), speaks each
English verse with espeak-ng (:mod:`leapformer.data.speech.espeak`),
resamples it from espeak's 22,050 Hz to ``sample_rate`` (default 16 kHz,
MuST-C's rate; libsoxr's high-quality filter through ``soxr``, the resampler
behind ``librosa.resample``) and
writes one mono 16-bit ``.wav`` per verse. Layout of ``out_dir``::

    wav/<vid>.wav                  one verse (vid = BBCCCVVV, e.g. 01001001)
    {train,dev,test}_st.tsv        English speech -> Japanese text
    {train,dev,test}_asr.tsv       English speech -> English text (ASR)
    spoken_bible.json              settings, counts, hours of audio, build time

The manifests are in the generic format of
:mod:`leapformer.data.speech.manifest` (paths relative to ``out_dir``).

**Selection.** ``max_verses`` is shared between the splits in proportion to
their sizes (each split gets at least one verse); each split takes the first
verses of a permutation drawn from ``seed``, listed in canonical order. A
larger ``max_verses`` with the same seed therefore extends a smaller build.

**Voice.** A fixed espeak-ng voice, rate (words per minute) and pitch;
``rate_jitter`` / ``pitch_jitter`` > 0 draw each verse's rate and pitch
uniformly within ``+-jitter`` of them, from ``(seed, vid)`` alone (a verse
always gets the same rate and pitch, whatever the selection; espeak-ng itself
is reproducible up to a few samples, see :mod:`~leapformer.data.speech.espeak`).

**Resuming.** Every file is written atomically; a verse whose ``.wav``
exists and is readable is not synthesised again. ``spoken_bible.json`` is
written first with the settings and ``"complete": false``: a later call on
the same folder with other voice settings raises ``ValueError`` instead of
mixing two voices.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from leapformer._io import atomic_open, atomic_write_text
from leapformer.data.parallel import bible_en_ja
from leapformer.data.speech.espeak import (
    DEFAULT_PITCH,
    DEFAULT_RATE,
    DEFAULT_VOICE,
    espeak_version,
    synthesize,
)
from leapformer.data.speech.manifest import SpeechItem, write_manifest

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_VERSES", "SPOKEN_BIBLE_FORMAT", "SPOKEN_BIBLE_SPLITS",
           "build_spoken_bible", "select_verses", "synthesize_verse"]

SPOKEN_BIBLE_SPLITS = ("train", "dev", "test")
SPOKEN_BIBLE_FORMAT = "leapformer-spoken-bible-v1"
DEFAULT_MAX_VERSES = 5000
INFO = "spoken_bible.json"


def _share(total: int, sizes: list[int]) -> list[int]:
    """``total`` split in proportion to ``sizes`` (largest remainders; each >= 1)."""
    if total >= sum(sizes):
        return list(sizes)
    if total < len(sizes):
        raise ValueError(f"max_verses must be at least {len(sizes)} (one per split), got "
                         f"{total}")
    exact = [total * s / sum(sizes) for s in sizes]
    out = [max(1, int(e)) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
    i = 0
    while sum(out) < total:
        if out[order[i % len(order)]] < sizes[order[i % len(order)]]:
            out[order[i % len(order)]] += 1
        i += 1
    while sum(out) > total:  # only when the floor of 1 pushed it over
        j = max(range(len(out)), key=lambda k: out[k])
        out[j] -= 1
    return out


def select_verses(max_verses: int | None = DEFAULT_MAX_VERSES, *, seed: int = 0,
                  max_chars: int | None = None, data_dir: str | Path | None = None
                  ) -> dict[str, list[tuple[str, str, str]]]:
    """``{"train", "dev", "test"}`` -> ``(vid, english, japanese)`` of the verses a
    build speaks (see the module docstring); ``None`` takes every verse.
    ``max_chars`` as in :func:`~leapformer.data.parallel.bible_en_ja`."""
    if max_verses is not None and (isinstance(max_verses, bool) or
                                   not isinstance(max_verses, int) or max_verses < 1):
        raise ValueError(f"max_verses must be None or a positive int, got {max_verses!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    corpus = bible_en_ja(data_dir, max_chars=max_chars)
    sizes = [len(corpus[s]) for s in SPOKEN_BIBLE_SPLITS]
    counts = sizes if max_verses is None else _share(max_verses, sizes)
    out = {}
    for k, (split, n) in enumerate(zip(SPOKEN_BIBLE_SPLITS, counts)):
        pairs = corpus[split]
        order = np.random.default_rng([seed, k]).permutation(len(pairs))[:n]
        out[split] = [pairs[i] for i in sorted(order.tolist())]
    return out


def _verse_voice(vid: str, settings: dict) -> tuple[int, int]:
    rate, pitch = settings["rate"], settings["pitch"]
    rj, pj = settings["rate_jitter"], settings["pitch_jitter"]
    if rj or pj:
        rng = np.random.default_rng([settings["seed"], int(vid)])
        rate += int(rng.integers(-rj, rj + 1))
        pitch += int(rng.integers(-pj, pj + 1))
    return min(max(rate, 80), 450), min(max(pitch, 0), 100)


def synthesize_verse(text: str, vid: str, settings: dict) -> np.ndarray:
    """One verse as int16 samples at ``settings["sample_rate"]`` (see the module
    docstring; ``settings`` as stored in ``spoken_bible.json``)."""
    rate, pitch = _verse_voice(vid, settings)
    samples, native = synthesize(text, voice=settings["voice"], rate=rate, pitch=pitch)
    target = settings["sample_rate"]
    if native != target:
        try:
            import soxr
        except ModuleNotFoundError:
            raise ModuleNotFoundError("resampling needs soxr, a dependency of librosa (pip "
                                      "install 'leapformer[speech]')") from None
        y = soxr.resample(samples.astype(np.float32) / 32768.0, native, target, quality="HQ")
        samples = np.round(np.clip(y, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    return samples


def _wav_frames(path: Path, sample_rate: int) -> int | None:
    """Samples of a finished verse file, or ``None`` if it must be (re)written."""
    import soundfile as sf

    if not path.is_file():
        return None
    try:
        info = sf.info(os.fspath(path))
    except RuntimeError:
        return None
    if info.samplerate != sample_rate or info.channels != 1 or info.frames < 1 or \
            info.subtype != "PCM_16":
        return None
    return int(info.frames)


def _write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    with atomic_open(path) as fh:
        sf.write(fh, samples, sample_rate, format="WAV", subtype="PCM_16")


def _check_settings(out_dir: Path, settings: dict, max_chars: int | None = None) -> None:
    """Refuse a folder built with other voice settings, or with another ``max_chars``
    (which verses qualify: the splits would be rebuilt from other verses)."""
    path = out_dir / INFO
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable ({err}); remove it or use another out_dir") \
            from None
    if old.get("format") != SPOKEN_BIBLE_FORMAT:
        raise ValueError(f"{path}: not a spoken-Bible build (format {old.get('format')!r})")
    diff = {k: (old.get("settings", {}).get(k), v) for k, v in settings.items()
            if old.get("settings", {}).get(k) != v}
    if "max_chars" in old and old["max_chars"] != max_chars:
        diff["max_chars"] = (old["max_chars"], max_chars)
    if diff:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(f"out_dir {out_dir} holds a build with other settings ({what}): "
                         "use another folder or the same settings")


def build_spoken_bible(out_dir: str | Path, *, max_verses: int | None = DEFAULT_MAX_VERSES,
                       seed: int = 0, voice: str = DEFAULT_VOICE, rate: int = DEFAULT_RATE,
                       pitch: int = DEFAULT_PITCH, rate_jitter: int = 0, pitch_jitter: int = 0,
                       sample_rate: int = 16000, max_chars: int | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       data_dir: str | Path | None = None) -> dict:
    """Build (or finish) the spoken Bible in ``out_dir`` (see the module docstring) and
    return what ``spoken_bible.json`` records. ``progress(done, total)`` is called
    after every verse (``done`` counts reused files too)."""
    for name, v, lo, hi in (("rate", rate, 80, 450), ("pitch", pitch, 0, 100),
                            ("rate_jitter", rate_jitter, 0, 200),
                            ("pitch_jitter", pitch_jitter, 0, 50),
                            ("sample_rate", sample_rate, 8000, 48000)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {v!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} is a file, not a folder")
    selection = select_verses(max_verses, seed=seed, max_chars=max_chars, data_dir=data_dir)
    settings = {"voice": voice, "rate": rate, "pitch": pitch, "rate_jitter": rate_jitter,
                "pitch_jitter": pitch_jitter, "sample_rate": sample_rate, "seed": seed}
    _check_settings(out_dir, settings, max_chars)
    synthesize("check", voice=voice)  # an unknown voice fails here, before any file
    info = {"format": SPOKEN_BIBLE_FORMAT, "settings": settings, "max_verses": max_verses,
            "max_chars": max_chars, "espeak_ng": espeak_version(), "complete": False}
    atomic_write_text(out_dir / INFO, json.dumps(info, indent=2) + "\n")
    total = sum(len(v) for v in selection.values())
    wav_dir = out_dir / "wav"
    start, done, made, synth_audio = time.perf_counter(), 0, 0, 0
    frames: dict[str, int] = {}
    if progress is not None:
        progress(0, total)
    for split in SPOKEN_BIBLE_SPLITS:
        for vid, en, _ in selection[split]:
            path = wav_dir / f"{vid}.wav"
            n = _wav_frames(path, sample_rate)
            if n is None:
                samples = synthesize_verse(en, vid, settings)
                if samples.size == 0:
                    raise RuntimeError(f"espeak-ng produced no audio for verse {vid}: {en!r}")
                _write_wav(path, samples, sample_rate)
                n, made, synth_audio = samples.size, made + 1, synth_audio + samples.size
            frames[vid] = n
            done += 1
            if progress is not None:
                progress(done, total)
    elapsed = time.perf_counter() - start
    hours = {}
    for split in SPOKEN_BIBLE_SPLITS:
        rows = selection[split]
        wavs = [wav_dir / f"{vid}.wav" for vid, _, _ in rows]
        write_manifest([SpeechItem(vid, w, 0, frames[vid], en, ja)
                        for (vid, en, ja), w in zip(rows, wavs)], out_dir / f"{split}_st.tsv")
        write_manifest([SpeechItem(vid, w, 0, frames[vid], en, en)
                        for (vid, en, _), w in zip(rows, wavs)], out_dir / f"{split}_asr.tsv")
        hours[split] = round(sum(frames[v] for v, _, _ in rows) / sample_rate / 3600, 4)
    info.update(complete=True, verses={s: len(v) for s, v in selection.items()}, hours=hours,
                synthesised=made, reused=total - made, seconds=round(elapsed, 2),
                real_time_factor=round(elapsed / (synth_audio / sample_rate), 5)
                if synth_audio else None)
    atomic_write_text(out_dir / INFO, json.dumps(info, indent=2) + "\n")
    log.info("spoken Bible in %s: %d verses (%d synthesised, %d reused) in %.1f s", out_dir,
             total, made, total - made, elapsed)
    return info
