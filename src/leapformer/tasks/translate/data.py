"""Data of the translation task: a tokenised corpus prepared once per run, and
deterministic token-bucketed batches with wait-k prefixes.

**Corpus** (:func:`prepare_translation_data`): the embedded en-ja Bible
(:func:`leapformer.data.parallel.bible_en_ja`, split by book; its ``dev``
split is this task's ``valid``) or a folder with line-aligned plain text
``{train,valid,test}.{src_lang}`` / ``.{tgt_lang}`` (``dev.*`` is accepted
for ``valid``). One SentencePiece model per side is trained on the training
split (:func:`leapformer.data.spm.train_spm`) and saved in the run folder
(``spm.src.model``, ``spm.tgt.model``) with every split's ids
(``data/ids.npz``) and texts (``data/<split>.src|tgt``, the references of
evaluation); ``data/data.json`` (written last) records what was read, so a
resumed run, ``translate eval`` and ``translate simul`` never tokenise again.
Training pairs with more than ``max_tokens`` tokens on a side are dropped
(valid and test are kept whole).

**Batches** (:class:`TokenBatcher`): fairseq-style. Each epoch is a
permutation of the training pairs drawn from ``(seed, epoch)``, cut into
pools of ``pool`` pairs, each pool sorted by length and cut into batches of
at most ``max_batch_tokens`` padded tokens (``batch size x longest side``,
EOS/BOS included); the epoch's batches are then shuffled. Batch ``i`` is a
pure function of ``(seed, i)``, so a resumed run sees exactly the batches an
uninterrupted one would.

**Wait-k** (:func:`waitk_memory_prefix`): target position ``t`` sees the
first ``min(k + t - 1, |x|)`` source tokens
(:func:`leapformer.ops.waitk_prefix` over the source tokens), and the source
EOS too once the whole source is visible -- exactly what the simultaneous
agent reads (:mod:`leapformer.models.simul`: the EOS arrives with the last
token). ``waitk="multi"`` samples ``k`` per batch uniformly from ``1 ..
longest source in the batch`` (multi-path wait-k, Elbayad et al. 2020),
deterministically in the batch index.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from leapformer._io import atomic_write_text
from leapformer.data.parallel import (
    TranslationBatch,
    bible_en_ja,
    collate_translation,
    read_parallel,
)
from leapformer.data.spm import SpmTokenizer, train_spm
from leapformer.ops import waitk_prefix

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
DATA_FORMAT = "leapformer-translation-data"

__all__ = ["SPLITS", "TokenBatcher", "TranslationData", "describe_source", "load_translation_data",
           "prepare_translation_data", "sample_k", "waitk_memory_prefix"]


def describe_source(data: str | Path | None, *, src_lang: str = "en", tgt_lang: str = "ja",
                    src_vocab: int = 8000, tgt_vocab: int = 8000, max_tokens: int = 200,
                    max_chars: int | None = None) -> dict:
    """What a run reads (stored in ``data.json``; a cached corpus is reused only for
    an equal description)."""
    for name, v in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab),
                    ("max_tokens", max_tokens)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, v in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        if not isinstance(v, str) or not v.strip() or "/" in v:
            raise ValueError(f"{name} must be a language code such as 'en', got {v!r}")
    if data is None:
        if (src_lang, tgt_lang) != ("en", "ja"):
            raise ValueError(f"the embedded corpus is English -> Japanese; got src_lang="
                             f"{src_lang!r}, tgt_lang={tgt_lang!r} (give --data DIR for "
                             f"another pair)")
        corpus, path = "bible-en-ja", None
    else:
        path = Path(data)
        if not path.is_dir():
            raise FileNotFoundError(f"data folder {path} does not exist")
        corpus, path = "files", str(path.resolve())
    return {"corpus": corpus, "path": path, "src_lang": src_lang, "tgt_lang": tgt_lang,
            "src_vocab": src_vocab, "tgt_vocab": tgt_vocab, "max_tokens": max_tokens,
            "max_chars": max_chars}


def _read_texts(source: dict) -> dict[str, list[tuple[str, str]]]:
    if source["corpus"] == "bible-en-ja":
        b = bible_en_ja(max_chars=source["max_chars"])
        return {"train": [(e, j) for _, e, j in b["train"]],
                "valid": [(e, j) for _, e, j in b["dev"]],
                "test": [(e, j) for _, e, j in b["test"]]}
    root, s, t = Path(source["path"]), source["src_lang"], source["tgt_lang"]
    out = {}
    for split in SPLITS:
        name = split
        if split == "valid" and not (root / f"valid.{s}").is_file() and \
                (root / f"dev.{s}").is_file():
            name = "dev"
        pairs = read_parallel(root / f"{name}.{s}", root / f"{name}.{t}")
        if source["max_chars"] is not None and split == "train":
            pairs = [p for p in pairs if max(map(len, p)) <= source["max_chars"]]
        out[split] = pairs
    return out


@dataclass
class TranslationData:
    """Tokenizers, ids and texts of a prepared corpus (see the module docstring)."""

    src_tok: SpmTokenizer
    tgt_tok: SpmTokenizer
    ids: dict[str, tuple[list[list[int]], list[list[int]]]]
    texts: dict[str, tuple[list[str], list[str]]]
    info: dict


def _pack(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    flat = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(lengths.sum()))
    return flat, np.concatenate([[0], np.cumsum(lengths)])


def _unpack(flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    flat = flat.astype(np.int64).tolist()
    return [flat[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def _vocab_options(lang: str) -> dict:
    ja = lang.lower().split("-")[0] in ("ja", "jpn", "zh", "ko")
    return {"character_coverage": 0.9995 if ja else 1.0}


def prepare_translation_data(out: str | Path, source: dict) -> TranslationData:
    """The run's tokenizers and ids: read from ``out`` when saved for the same
    ``source`` (:func:`describe_source`), else built and saved."""
    out = Path(out)
    info_path = out / "data" / "data.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("source") == source:
            return load_translation_data(out)
        log.info("%s holds data for another source; preparing again", out)
    t0 = time.perf_counter()
    texts = _read_texts(source)
    trained = {}
    for side, lang, vocab in (("src", source["src_lang"], source["src_vocab"]),
                              ("tgt", source["tgt_lang"], source["tgt_vocab"])):
        col = 0 if side == "src" else 1
        trained[side] = train_spm([p[col] for p in texts["train"]], vocab,
                                  hard_vocab_limit=False, **_vocab_options(lang))
    arrays, kept_texts, stats = {}, {}, {}
    for split in SPLITS:
        src_ids = trained["src"].encode([p[0] for p in texts[split]])
        tgt_ids = trained["tgt"].encode([p[1] for p in texts[split]])
        keep = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids))
                if s and t and (split != "train" or max(len(s), len(t)) <= source["max_tokens"])]
        if not keep:
            raise ValueError(f"the {split} split has no usable sentence pair (max_tokens="
                             f"{source['max_tokens']})")
        src_ids, tgt_ids = [src_ids[i] for i in keep], [tgt_ids[i] for i in keep]
        kept_texts[split] = ([texts[split][i][0] for i in keep], [texts[split][i][1] for i in keep])
        for side, seqs in (("src", src_ids), ("tgt", tgt_ids)):
            flat, offsets = _pack(seqs)
            arrays[f"{split}_{side}"], arrays[f"{split}_{side}_offsets"] = flat, offsets
        stats[split] = {"pairs": len(keep), "dropped": len(texts[split]) - len(keep),
                        "src_tokens": int(sum(map(len, src_ids))),
                        "tgt_tokens": int(sum(map(len, tgt_ids)))}
    (out / "data").mkdir(parents=True, exist_ok=True)
    trained["src"].save(out / "spm.src.model")
    trained["tgt"].save(out / "spm.tgt.model")
    np.savez(out / "data" / "ids.npz", **arrays)
    for split in SPLITS:
        for side, lines in zip(("src", "tgt"), kept_texts[split]):
            atomic_write_text(out / "data" / f"{split}.{side}", "".join(x + "\n" for x in lines))
    info = {"format": DATA_FORMAT, "source": source, "splits": stats,
            "src_vocab_size": trained["src"].vocab_size,
            "tgt_vocab_size": trained["tgt"].vocab_size}
    atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")  # last: marks complete
    log.info("prepared %s in %.1f s: %s", source["corpus"], time.perf_counter() - t0, stats)
    return load_translation_data(out)


def load_translation_data(out: str | Path) -> TranslationData:
    """A corpus saved in a run folder by :func:`prepare_translation_data`."""
    out = Path(out)
    info_path = out / "data" / "data.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: {out} is not a translation run folder "
                                "(made by 'leapformer translate train')")
    info = json.loads(info_path.read_text())
    z = np.load(out / "data" / "ids.npz")
    ids, texts = {}, {}
    for split in SPLITS:
        ids[split] = tuple(_unpack(z[f"{split}_{side}"], z[f"{split}_{side}_offsets"])
                           for side in ("src", "tgt"))
        texts[split] = tuple((out / "data" / f"{split}.{side}").read_text(encoding="utf-8")
                             .split("\n")[:-1] for side in ("src", "tgt"))
    return TranslationData(SpmTokenizer.load(out / "spm.src.model"),
                           SpmTokenizer.load(out / "spm.tgt.model"), ids, texts, info)


# ----------------------------------------------------------------------------- batches


class TokenBatcher:
    """Token-bucketed batches of ``(source ids, target ids)`` pairs (module docstring).

    ``batch(i)`` -> the pair indices of global batch ``i`` (a pure function of
    ``seed`` and ``i``). A pair costs ``max(|src| + 1, |tgt| + 1)`` tokens per
    row; a batch holds rows while ``rows x longest row <= max_batch_tokens``
    (always at least one row).
    """

    def __init__(self, src_lengths, tgt_lengths, max_batch_tokens: int, *, seed: int = 0,
                 pool: int = 2000):
        if len(src_lengths) != len(tgt_lengths) or not len(src_lengths):
            raise ValueError(f"need as many source as target lengths (> 0), got "
                             f"{len(src_lengths)} and {len(tgt_lengths)}")
        for name, v in (("max_batch_tokens", max_batch_tokens), ("pool", pool)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.cost = np.maximum(np.asarray(src_lengths), np.asarray(tgt_lengths)) + 1
        self.max_batch_tokens, self.seed, self.pool = max_batch_tokens, seed, pool
        self._counts: list[int] = []  # batches per epoch, epochs 0 .. len - 1
        self._epoch: tuple[int, list[np.ndarray]] | None = None

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The batches (arrays of pair indices) of ``epoch``, in training order."""
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(len(self.cost))
        batches = []
        for start in range(0, len(perm), self.pool):
            part = perm[start:start + self.pool]
            part = part[np.argsort(self.cost[part], kind="stable")]
            rows, longest = [], 0
            for j in part:
                c = int(self.cost[j])
                if rows and (len(rows) + 1) * max(longest, c) > self.max_batch_tokens:
                    batches.append(np.array(rows))
                    rows, longest = [], 0
                rows.append(int(j))
                longest = max(longest, c)
            if rows:
                batches.append(np.array(rows))
        order = rng.permutation(len(batches))
        batches = [batches[o] for o in order]
        self._epoch = (epoch, batches)
        return batches

    def locate(self, i: int) -> tuple[int, int]:
        """``(epoch, batch within the epoch)`` of global batch ``i``."""
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise ValueError(f"batch index must be a non-negative int, got {i!r}")
        epoch, first = 0, 0
        while True:
            if epoch == len(self._counts):
                self._counts.append(len(self.epoch_batches(epoch)))
            if i < first + self._counts[epoch]:
                return epoch, i - first
            first += self._counts[epoch]
            epoch += 1

    def batch(self, i: int) -> np.ndarray:
        epoch, j = self.locate(i)
        return self.epoch_batches(epoch)[j]

    def batches_per_epoch(self) -> int:
        return len(self.epoch_batches(0))


def waitk_memory_prefix(k: int, tgt_len: int, src_lengths: Tensor) -> Tensor:
    """``[B, tgt_len]`` cross-attention prefixes of wait-``k`` for sources of
    ``src_lengths [B]`` positions (EOS included): ``min(k + t - 1, n)`` tokens,
    ``n + 1`` (with the EOS) once all ``n = |x|`` tokens are visible."""
    n = (src_lengths.long() - 1).clamp_min(1)
    p = waitk_prefix(k, tgt_len, n)
    return torch.where(p >= n[:, None], src_lengths.long()[:, None], p)


def sample_k(waitk: int | str, seed: int, i: int, max_source: int) -> int:
    """The ``k`` of batch ``i``: ``waitk`` itself, or for ``"multi"`` one drawn uniformly
    from ``1 .. max_source`` by a generator seeded with ``(seed, i)``."""
    if waitk == "multi":
        rng = np.random.default_rng([seed, i, 7919])
        return int(rng.integers(1, max(1, max_source) + 1))
    return int(waitk)


def make_batch(data: TranslationData, split: str, idx, *, waitk=None, seed: int = 0,
               i: int = 0) -> dict:
    """A training/validation batch dict: the :class:`TranslationBatch` fields, ``prefix``
    (wait-k ``memory_prefix`` or None) and ``k``."""
    src_ids, tgt_ids = data.ids[split]
    b: TranslationBatch = collate_translation([src_ids[j] for j in idx],
                                              [tgt_ids[j] for j in idx])
    out = dict(b._asdict())
    out["prefix"], out["k"] = None, None
    if waitk is not None:
        src_len = (~b.src_mask).sum(1)
        k = sample_k(waitk, seed, i, int(src_len.max()) - 1)
        out["prefix"], out["k"] = waitk_memory_prefix(k, b.tgt_in.shape[1], src_len), k
    return out
