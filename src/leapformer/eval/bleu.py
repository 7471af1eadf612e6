"""Corpus BLEU with sacreBLEU on detokenised text (docs/math.md §4.1: "Quality: BLEU with
sacreBLEU on detokenised output").

The tokenizer follows the target language, as sacreBLEU recommends:

- Japanese (``ja``, ``jpn``, ``japanese``): ``ja-mecab`` (MeCab with the IPA
  dictionary; ``pip install leapformer[ja]`` installs ``mecab-python3`` and
  ``ipadic``), or ``char`` (character n-grams) when MeCab cannot be loaded;
  the choice is logged and returned, so the two never get mixed up silently.
- any other language: ``13a`` (sacreBLEU's default, mteval-v13a).

The result carries sacreBLEU's signature (tokenizer and version included):
report it with the score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

logger = logging.getLogger(__name__)

JAPANESE = ("ja", "jpn", "japanese")

__all__ = ["BleuResult", "bleu_from_stats", "bleu_tokenizer", "check_bleu_stats", "corpus_bleu",
           "sentence_bleu_stats", "writes_without_spaces"]


@dataclass(frozen=True)
class BleuResult:
    """``score`` (0-100), ``tokenizer``, sacreBLEU ``signature``, n-gram
    ``precisions`` (percent), brevity penalty ``bp``, ``sys_len`` / ``ref_len``."""

    score: float
    tokenizer: str
    signature: str
    precisions: tuple[float, ...]
    bp: float
    sys_len: int
    ref_len: int

    def __str__(self) -> str:
        return f"BLEU = {self.score:.2f} ({self.signature})"


@lru_cache(maxsize=1)
def _ja_mecab_available() -> bool:
    try:
        from sacrebleu.tokenizers.tokenizer_ja_mecab import TokenizerJaMecab

        TokenizerJaMecab()("テスト")
    except Exception as err:  # noqa: BLE001 - any failure to load MeCab means "not available"
        logger.warning("sacrebleu's ja-mecab tokenizer is unavailable (%s: %s); Japanese BLEU "
                       "falls back to the 'char' tokenizer", type(err).__name__, err)
        return False
    return True


def _language(target_lang: str) -> str:
    if not isinstance(target_lang, str) or not target_lang.strip():
        raise ValueError(f"target_lang must be a language code such as 'ja' or 'de', got "
                         f"{target_lang!r}")
    return target_lang.strip().lower().replace("_", "-").split("-")[0]


def writes_without_spaces(target_lang: str) -> bool:
    """True for Japanese and Chinese (``ja``, ``jpn``, ``japanese``, ``zh``, ``zho``,
    ``chinese``, any region suffix): sentences join without a space."""
    return _language(target_lang) in (*JAPANESE, "zh", "zho", "chinese")


def bleu_tokenizer(target_lang: str) -> str:
    """The sacreBLEU tokenizer used for ``target_lang`` (see the module docstring)."""
    lang = _language(target_lang)
    if lang in JAPANESE:
        return "ja-mecab" if _ja_mecab_available() else "char"
    return "13a"


def _check_texts(name: str, texts, n: int | None) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(t).__name__}")
    if n is not None and len(texts) != n:
        raise ValueError(f"{name} has {len(texts)} sentences but hyps has {n}")
    return list(texts)


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]],
                target_lang: str) -> BleuResult:
    """Corpus BLEU of detokenised ``hyps`` against ``refs``.

    ``refs``: one reference string per hypothesis, or several reference
    streams (a list of lists, each as long as ``hyps``, sacreBLEU's layout).
    """
    from sacrebleu.metrics import BLEU

    hyps = _check_texts("hyps", hyps, None)
    if not hyps:
        raise ValueError("hyps is empty")
    if isinstance(refs, Sequence) and refs and not isinstance(refs, str) and \
            all(isinstance(r, str) for r in refs):
        streams = [_check_texts("refs", refs, len(hyps))]
    else:
        if isinstance(refs, str) or not isinstance(refs, Sequence) or not refs:
            raise TypeError("refs must be a list of strings (one per hypothesis) or a non-empty "
                            "list of reference streams")
        streams = [_check_texts(f"refs[{k}]", r, len(hyps)) for k, r in enumerate(refs)]
    tok = bleu_tokenizer(target_lang)
    logger.info("BLEU for target language %r with sacreBLEU tokenizer %r", target_lang, tok)
    metric = BLEU(tokenize=tok)
    res = metric.corpus_score(hyps, streams)
    return BleuResult(score=float(res.score), tokenizer=tok, signature=str(metric.get_signature()),
                      precisions=tuple(float(p) for p in res.precisions), bp=float(res.bp),
                      sys_len=int(res.sys_len), ref_len=int(res.ref_len))


def sentence_bleu_stats(hyps: Sequence[str], refs: Sequence[str], target_lang: str) -> np.ndarray:
    """sacreBLEU's sufficient statistics of every sentence (one reference each), int64
    ``[n, 10]``: matched n-grams for n = 1..4, candidate n-grams for n = 1..4,
    hypothesis length, reference length, with the target language's tokenizer. Their
    column sums give the corpus BLEU of :func:`corpus_bleu` (:func:`bleu_from_stats`)."""
    from sacrebleu.metrics import BLEU

    hyps = _check_texts("hyps", hyps, None)
    refs = _check_texts("refs", refs, len(hyps))
    if not hyps:
        raise ValueError("hyps is empty")
    metric = BLEU(tokenize=bleu_tokenizer(target_lang), effective_order=True)
    rows = []
    for h, r in zip(hyps, refs, strict=True):
        sc = metric.sentence_score(h, [r])
        rows.append([*sc.counts, *sc.totals, sc.sys_len, sc.ref_len])
    return np.asarray(rows, dtype=np.int64)


def check_bleu_stats(stats, name: str, shape=None) -> np.ndarray:
    """``stats`` as int64 ``[n > 0, 10]`` sentence statistics (:func:`sentence_bleu_stats`),
    or a ValueError naming ``name``."""
    a = np.asarray(stats)
    if a.ndim != 2 or a.shape[1] != 10 or a.shape[0] == 0 or a.dtype.kind not in "iu" \
            or (a < 0).any():
        raise ValueError(f"{name} must be non-negative integer sentence statistics [n > 0, 10] "
                         f"(sentence_bleu_stats), got {a.dtype} {shape or a.shape}")
    return a.astype(np.int64)


def bleu_from_stats(stats) -> float:
    """Corpus BLEU (sacreBLEU's ``exp`` smoothing, as :func:`corpus_bleu`) of summed
    sentence statistics ``[n, 10]`` or of one summed row ``[10]``."""
    from sacrebleu.metrics import BLEU

    a = np.asarray(stats)
    t = check_bleu_stats(a[None] if a.ndim == 1 else a, "stats", a.shape).sum(0)
    return float(BLEU.compute_bleu([int(x) for x in t[:4]], [int(x) for x in t[4:8]],
                                   int(t[8]), int(t[9]), smooth_method="exp").score)
