"""TTS data: the text front-end (characters or espeak-ng phonemes), utterance lists
from the spoken-Bible manifests or LJ Speech, 22.05 kHz log-mel targets, batching,
Griffin-Lim and wav writing.

Symbol ids: ``0`` padding, ``1`` unknown symbol, ``2`` end of text (appended to
every text), then the symbols seen in the training texts, sorted.
"""

from __future__ import annotations

import logging
import os
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from leapformer._io import atomic_open
from leapformer.data.speech import (
    TTS_MEL,
    GlobalCMVN,
    SpeechItem,
    load_audio,
    phonemize,
    read_ljspeech,
    read_manifest,
    tts_log_mel,
)

log = logging.getLogger(__name__)

__all__ = ["DATA_FORMATS", "FRONT_ENDS", "TextFrontend", "griffin_lim", "load_items",
           "mel_batches", "utterance_mel", "write_wav"]

FRONT_ENDS = ("chars", "phonemes")
DATA_FORMATS = ("spoken-bible", "ljspeech")
PAD, UNK, EOS = 0, 1, 2
_SPECIAL = ("<pad>", "<unk>", "</s>")
SAMPLE_RATE = TTS_MEL["sample_rate"]


@dataclass
class TextFrontend:
    """Text -> symbol ids: ``chars`` (NFKC, lower case, spaces collapsed) or
    ``phonemes`` (espeak-ng IPA, one symbol per code point)."""

    kind: str
    symbols: list[str]

    def __post_init__(self):
        if self.kind not in FRONT_ENDS:
            raise ValueError(f"front_end must be one of {FRONT_ENDS}, got {self.kind!r}")
        self._index = {s: i + len(_SPECIAL) for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        return len(_SPECIAL) + len(self.symbols)

    def normalize(self, text: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text must be a non-empty str, got {text!r}")
        if self.kind == "phonemes":
            return phonemize(text)
        return " ".join(unicodedata.normalize("NFKC", text).lower().split())

    def encode(self, text: str) -> list[int]:
        """Symbol ids of ``text`` followed by the end-of-text id."""
        return [self._index.get(c, UNK) for c in self.normalize(text)] + [EOS]

    @classmethod
    def build(cls, texts: Sequence[str], kind: str = "chars") -> TextFrontend:
        """The front-end whose symbols are those of ``texts``."""
        probe = cls(kind, [])
        return cls(kind, sorted({c for t in texts for c in probe.normalize(t)}))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "symbols": self.symbols}

    @classmethod
    def from_dict(cls, d: dict) -> TextFrontend:
        return cls(d["kind"], list(d["symbols"]))


def load_items(data: str | Path, fmt: str, split: str, *, max_items: int | None = None,
               held_out: int = 100) -> list[SpeechItem]:
    """Utterances of ``split`` (``train``, ``dev`` or ``test``): ``{split}_asr.tsv`` of a
    spoken-Bible folder, or an LJ Speech folder whose last ``2 * held_out`` rows are
    dev and test (the release has no official split)."""
    if fmt not in DATA_FORMATS:
        raise ValueError(f"data format must be one of {DATA_FORMATS}, got {fmt!r}")
    if split not in ("train", "dev", "test"):
        raise ValueError(f"split must be train, dev or test, got {split!r}")
    data = Path(data)
    if fmt == "spoken-bible":
        path = data / f"{split}_asr.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --data must be a spoken-Bible folder "
                                    "(leapformer data spoken-bible)")
        items = read_manifest(path)
    else:
        rows = read_ljspeech(data)
        if len(rows) <= 2 * held_out:
            raise ValueError(f"{data}: {len(rows)} utterances, need more than {2 * held_out} "
                             f"(2 x held_out for dev and test)")
        cut = len(rows) - 2 * held_out
        items = {"train": rows[:cut], "dev": rows[cut:cut + held_out],
                 "test": rows[cut + held_out:]}[split]
    return items[:max_items] if max_items else items


def utterance_audio(item: SpeechItem) -> np.ndarray:
    """The utterance's samples at 22,050 Hz (resampled with soxr HQ if needed)."""
    samples, rate = load_audio(item)
    if rate != SAMPLE_RATE:
        import soxr

        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return samples


def utterance_mel(item: SpeechItem) -> Tensor:
    """``[frames, 80]`` log-mel of the utterance (docs/speech.md, ``tts_log_mel``)."""
    return tts_log_mel(utterance_audio(item), SAMPLE_RATE)


def mel_batches(lengths: Sequence[int], max_frames: int, *, shuffle: bool,
                rng: random.Random | None = None) -> list[list[int]]:
    """Index batches of utterances of similar length, each holding at most
    ``max_frames`` padded frames (an utterance longer than that is a batch alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur, longest = [], [], 0
    for i in order:
        longest_new = max(longest, lengths[i])
        if cur and longest_new * (len(cur) + 1) > max_frames:
            batches.append(cur)
            cur, longest_new = [], lengths[i]
        cur.append(i)
        longest = longest_new
    if cur:
        batches.append(cur)
    if shuffle:
        (rng or random).shuffle(batches)
    return batches


def collate(texts: Sequence[Sequence[int]], mels: Sequence[Tensor] | None = None
            ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(text [B, S], text_mask [B, S], mel [B, T, n] | None, mel_lengths [B] | None)``."""
    S = max(len(t) for t in texts)
    text = torch.zeros(len(texts), S, dtype=torch.long)
    for i, t in enumerate(texts):
        text[i, :len(t)] = torch.as_tensor(t)
    mask = text == PAD
    if mels is None:
        return text, mask, None, None
    lengths = torch.tensor([m.shape[0] for m in mels])
    mel = torch.zeros(len(mels), int(lengths.max()), mels[0].shape[1])
    for i, m in enumerate(mels):
        mel[i, :m.shape[0]] = m.float()
    return text, mask, mel, lengths


def griffin_lim(log_mel: Tensor | np.ndarray, cmvn: GlobalCMVN | None = None, *,
                n_iter: int = 32) -> np.ndarray:
    """A 22.05 kHz waveform from a ``[frames, 80]`` log-mel (normalised by ``cmvn`` if
    given) by Griffin-Lim (``librosa.feature.inverse.mel_to_audio``, the settings of
    ``tts_log_mel``: magnitude, Slaney filters, 1024 FFT, hop 256, 0-8 kHz)."""
    try:
        import librosa
    except ModuleNotFoundError:
        raise ModuleNotFoundError("Griffin-Lim needs librosa (pip install "
                                  "'leapformer[speech]')") from None
    mel = log_mel.detach().cpu().float().numpy() if isinstance(log_mel, Tensor) else \
        np.asarray(log_mel, np.float32)
    if mel.ndim != 2 or mel.shape[1] != TTS_MEL["n_mels"] or mel.shape[0] < 1:
        raise ValueError(f"log_mel must be [frames, {TTS_MEL['n_mels']}], got {list(mel.shape)}")
    if cmvn is not None:
        mel = mel * cmvn.std + cmvn.mean
    magnitude = np.exp(mel.astype(np.float64)).T
    y = librosa.feature.inverse.mel_to_audio(
        magnitude, sr=SAMPLE_RATE, n_fft=TTS_MEL["n_fft"], hop_length=TTS_MEL["hop"],
        win_length=TTS_MEL["n_fft"], power=1.0, fmin=TTS_MEL["f_min"], fmax=TTS_MEL["f_max"],
        n_iter=n_iter)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono 16-bit PCM ``path`` atomically."""
    import soundfile as sf

    samples = np.asarray(samples, np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f"samples must be a non-empty 1-D array, got shape {samples.shape}")
    path = Path(path)
    with atomic_open(path) as fh:
        sf.write(fh, samples, sample_rate, format="WAV", subtype="PCM_16")
    log.info("wrote %s (%.2f s)", os.fspath(path), samples.size / sample_rate)
    return path
