"""Deterministic batching of classification splits."""

import pytest
import torch

from leapformer.tasks.lra.batching import Split, batch_fn, eval_batches, pad


def _split(n=10):
    return Split([[i + 1] * (i % 4 + 1) for i in range(n)], [i % 3 for i in range(n)])


def test_pad_truncates_and_pads():
    out = pad([[1, 2, 3], [4]], max_length=2)
    assert out.tolist() == [[1, 2], [4, 0]]


def test_batches_are_a_function_of_the_index_and_cover_each_epoch():
    split = _split(10)
    a, b = batch_fn(split, 4, 8, seed=3), batch_fn(split, 4, 8, seed=3)
    for i in (0, 7, 2, 7):
        (ta,), la = a(i)
        (tb,), lb = b(i)
        assert torch.equal(ta, tb) and torch.equal(la, lb)
    seen = []
    for i in range(5):  # 20 draws = 2 epochs of 10
        (tokens,), labels = a(i)
        seen += tokens[:, 0].tolist()
    assert sorted(seen[:10]) == list(range(1, 11)) and sorted(seen[10:]) == list(range(1, 11))
    assert not torch.equal(batch_fn(split, 4, 8, seed=4)(0)[0][0], a(0)[0][0])


def test_labels_follow_their_tokens():
    split = _split(10)
    (tokens,), labels = batch_fn(split, 5, 8, seed=0)(1)
    for t, y in zip(tokens, labels):
        assert (int(t[0]) - 1) % 3 == int(y)


def test_eval_batches_visit_every_example_once():
    split = _split(11)
    got = torch.cat([t[:, 0] for (t,), _ in eval_batches(split, 4, 8)])
    assert got.tolist() == list(range(1, 12))


def test_paired_split_batches_both_sequences_of_the_same_examples():
    first = [[i + 1] * (i % 3 + 1) for i in range(9)]
    second = [[i + 20] * (i % 2 + 1) for i in range(9)]
    split = Split(first, [i % 2 for i in range(9)], tokens2=second)
    (t1, t2), labels = batch_fn(split, 4, 8, seed=1)(2)
    assert t1.shape[0] == t2.shape[0] == 4
    assert ((t2[:, 0] - 20) == (t1[:, 0] - 1)).all()
    assert ((t1[:, 0] - 1) % 2 == labels).all()
    got = [(int(a[0]), int(b[0])) for (x, y), _ in eval_batches(split, 4, 8) for a, b in zip(x, y)]
    assert got == [(i + 1, i + 20) for i in range(9)]
    assert split.mean_length == (sum(map(len, first)) + sum(map(len, second))) / 18


def test_split_errors():
    with pytest.raises(ValueError, match="3 second sequences but 2 labels"):
        Split([[1], [2]], [0, 1], tokens2=[[1], [2], [3]])
    with pytest.raises(ValueError, match="2 token sequences but 1 labels"):
        Split([[1], [2]], [0])
    with pytest.raises(ValueError, match="at least one"):
        Split([], [])
