"""LRA Text and Retrieval: the Bible stand-ins, the official layouts, end-to-end runs."""

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from leapformer.tasks.lra import load_splits, run_lra
from leapformer.tasks.lra.sets import retrieval, text

SMALL = dict(n_train=64, n_valid=24, n_test=24, min_len=40, max_len=120, max_length=100)
TINY = dict(n_train=32, n_valid=8, n_test=8, min_len=20, max_len=60, max_length=64,
            batch_size=4, eval_every=3)


def _chapters(passages):
    return set().union(*(p.chapters for p in passages))


def test_text_stand_in():
    p = replace(text.PROFILES["lite"], **SMALL)
    a, b = text.genre_passages(p, seed=1), text.genre_passages(p, seed=1)
    assert [x.text for x in a["train"][0]] == [x.text for x in b["train"][0]]
    assert a["train"][1] == b["train"][1]
    assert [x.text for x in text.genre_passages(p, 2)["train"][0]] != [x.text for x in a["train"][0]]
    for split, (passages, labels) in a.items():
        assert Counter(labels) == {y: len(labels) // 8 for y in range(8)}
        assert all(x.genre_id - 1 == y for x, y in zip(passages, labels))
        assert all(40 <= len(x.text.encode()) <= 120 for x in passages)
    ch = {k: _chapters(v[0]) for k, v in a.items()}
    assert not ch["train"] & ch["valid"] and not ch["train"] & ch["test"]
    assert not ch["valid"] & ch["test"]
    texts = {k: {x.text for x in v[0]} for k, v in a.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["valid"]
    data = text.load(p, None, seed=1)
    assert data.num_classes == 8 and data.vocab_size == 257
    seqs = data.splits["test"].tokens
    assert all(1 <= int(s.min()) and int(s.max()) <= 256 and len(s) <= 100 for s in seqs)


@pytest.mark.parametrize("stand_in, key", [(None, "book"), ("genre", "genre_id")])
def test_retrieval_stand_in(stand_in, key):
    p = replace(retrieval.PROFILES["lite"], **SMALL, stand_in=stand_in)
    a = retrieval.book_pairs(p, seed=3)
    b = retrieval.book_pairs(p, seed=3)
    assert [x.text for x in a["valid"][1]] == [x.text for x in b["valid"][1]]
    for split, (first, second, labels) in a.items():
        assert Counter(labels) == {0: len(labels) // 2, 1: len(labels) // 2}
        assert all((getattr(x, key) == getattr(y, key)) == bool(lab)
                   for x, y, lab in zip(first, second, labels))
        assert not any(x.overlaps(y) for x, y in zip(first, second))
    ch = {k: _chapters(v[0] + v[1]) for k, v in a.items()}
    assert not ch["train"] & ch["valid"] and not ch["train"] & ch["test"]
    assert not ch["valid"] & ch["test"]
    data = retrieval.load(p, None, seed=3)
    split = data.splits["train"]
    assert split.paired and data.num_classes == 2
    x1, x2 = split.inputs([0, 1, 2], 100)
    assert x1.shape[0] == x2.shape[0] == 3 and int(x1.max()) <= 256
    assert retrieval.PAIRED and not text.PAIRED


def test_retrieval_shifted_windows_share_text_and_negatives_come_from_other_books():
    p = replace(retrieval.PROFILES["lite"], **SMALL, stand_in="shifted")
    a = retrieval.book_pairs(p, seed=4)
    assert [x.text for x in a["test"][1]] == [x.text for x in retrieval.book_pairs(p, 4)["test"][1]]
    for split, (first, second, labels) in a.items():
        assert Counter(labels) == {0: len(labels) // 2, 1: len(labels) // 2}
        for x, y, lab in zip(first, second, labels):
            if lab:  # the second window starts at one of the first one's later verses
                assert y.segment is x.segment and x.start < y.start
                assert y.start < x.stop or (x.stop - x.start == 1 and y.start == x.start + 1)
                assert 40 <= len(y.text.encode()) <= 120 or y.stop == len(y.segment.verses)
            else:
                assert x.book != y.book
    ch = {k: _chapters(v[0] + v[1]) for k, v in a.items()}
    assert not ch["train"] & ch["valid"] and not ch["train"] & ch["test"]


def test_retrieval_lite_pairs_overlap_and_unknown_variants_are_refused():
    lite = retrieval.PROFILES["lite"]
    assert (lite.stand_in, lite.pair_features) == ("shifted", "normalized")
    assert retrieval.PROFILES["paper"].pair_features == "official"
    assert retrieval.PROFILES["paper"].stand_in is None           # same book, as before
    with pytest.raises(ValueError, match="stand_in must be one of"):
        retrieval.book_pairs(replace(retrieval.PROFILES["lite"], **SMALL, stand_in="chapter"), 0)


def test_profiles():
    for m in (text, retrieval):
        assert m.PROFILES["paper"].max_length == 4000
    assert (text.PROFILES["paper"].batch_size, text.PROFILES["paper"].lr,
            text.PROFILES["paper"].steps) == (32, 1e-4, 20_000)
    assert (retrieval.PROFILES["paper"].batch_size, retrieval.PROFILES["paper"].lr,
            retrieval.PROFILES["paper"].steps) == (16, 2e-4, 50_000)


def test_text_runs_on_stand_in_and_on_aclimdb(tmp_path):
    from tests.data.test_imdb import write_imdb

    res = run_lra("text", "linear", out=tmp_path / "gen", steps=3, progress=False,
                  overrides=TINY)
    assert res["steps"] == 3 and res["data_source"].startswith("embedded")
    assert json.loads((tmp_path / "gen" / "results.json").read_text())["steps"] == 3
    write_imdb(tmp_path / "imdb" / "aclImdb")
    data = load_splits("text", replace(text.PROFILES["lite"], **TINY), tmp_path / "imdb", 0)
    assert data.num_classes == 2 and len(data.splits["train"]) == 4
    res = run_lra("text", "linear", out=tmp_path / "off", steps=3, progress=False,
                  data_dir=tmp_path / "imdb", overrides=TINY)
    assert res["steps"] == 3 and res["data_source"] == str(tmp_path / "imdb")


def test_retrieval_runs_on_stand_in_and_on_aan_files(tmp_path):
    from tests.data.test_aan import write_aan

    res = run_lra("retrieval", "linear", out=tmp_path / "gen", steps=3, progress=False,
                  overrides=TINY)
    assert res["steps"] == 3 and res["data_source"].startswith("embedded")
    write_aan(tmp_path / "aan")
    res = run_lra("retrieval", "linear", out=tmp_path / "off", steps=3, progress=False,
                  data_dir=tmp_path / "aan", overrides=TINY)
    assert res["steps"] == 3 and res["mean_train_length"] == pytest.approx(
        np.mean([len(s[:64].encode()) for r in
                 [x.split("\t")[3:] for x in (tmp_path / "aan" / "new_aan_pairs.train.tsv")
                  .read_text().splitlines()] for s in r]))
