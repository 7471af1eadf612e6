"""The MQAR generator (Zoology's multiquery_ar): invariants, seeding, constraints, files."""

import numpy as np
import pytest

from leapformer.data.mqar import IGNORE, load_mqar, make_mqar, save_mqar

N, T, K, V = 300, 64, 8, 100


@pytest.fixture(scope="module")
def data():
    return make_mqar(N, T, K, V, seed=3)


def test_shapes_and_dtypes(data):
    inputs, labels = data
    assert inputs.shape == labels.shape == (N, T)
    assert inputs.dtype == labels.dtype == np.int64


def test_pairs_at_the_start(data):
    inputs, _ = data
    keys, values = inputs[:, 0:2 * K:2], inputs[:, 1:2 * K:2]
    assert ((keys >= 1) & (keys < V // 2)).all()
    assert ((values >= V // 2) & (values < V)).all()
    assert all(len(set(row)) == K for row in keys)  # keys distinct within a sequence


def test_queries_and_labels(data):
    inputs, labels = data
    for x, y in zip(inputs, labels):
        pairs = dict(zip(x[0:2 * K:2], x[1:2 * K:2]))
        rest_x, rest_y = x[2 * K:], y[2 * K:]
        assert (y[:2 * K] == IGNORE).all()
        q = np.nonzero(rest_y != IGNORE)[0]
        assert len(q) == K
        assert (q % 2 == 0).all()  # even offsets after the pairs
        # every key queried exactly once, the label is its pair's value
        assert sorted(rest_x[q]) == sorted(pairs)
        assert all(rest_y[i] == pairs[rest_x[i]] for i in q)
        # the value never follows the query; everything else is filler 0
        assert not np.isin(rest_x, x[1:2 * K:2]).any()
        filler = np.ones(len(rest_x), bool)
        filler[q] = False
        assert (rest_x[filler] == 0).all()


def test_power_law_prefers_short_gaps():
    _, labels = make_mqar(4000, 64, 4, 100, seed=0)
    gaps = (np.nonzero(labels != IGNORE)[1] - 8) // 2
    counts = np.bincount(gaps, minlength=28)
    # p(g) ∝ (g + 1)^(alpha - 1), without replacement: gap 0 is the likeliest slot
    assert counts[0] > counts[1] > counts[5] > counts[27]
    assert counts[0] / counts.sum() > 0.15


def test_seeded():
    a = make_mqar(20, 32, 4, 64, seed=7)
    b = make_mqar(20, 32, 4, 64, seed=7)
    c = make_mqar(20, 32, 4, 64, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_dense_key_draw():
    # num_kv close to the key range: the generator's argpartition path
    inputs, labels = make_mqar(50, 60, 15, 62, seed=1)
    keys = inputs[:, 0:30:2]
    assert all(len(set(row)) == 15 for row in keys)
    assert ((keys >= 1) & (keys < 31)).all()
    assert ((labels != IGNORE).sum(1) == 15).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be >= 1"),
    ({"num_kv": 0}, "num_kv must be >= 1"),
    ({"seq_len": 63}, "seq_len must be even"),
    ({"vocab": 64}, r"vocab must be > seq_len \(64\)"),
    ({"num_kv": 17}, r"num_kv must satisfy 4 \* num_kv <= seq_len"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"alpha": 0.0}, "alpha must be a positive number"),
    ({"n": 2.5}, "n must be an int"),
])
def test_constraints(kwargs, match):
    args = {"n": 4, "seq_len": 64, "num_kv": 4, "vocab": 128, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_mqar(**args)


def test_save_load_round_trip(tmp_path):
    inputs, labels = make_mqar(10, 16, 2, 32, seed=0)
    path = save_mqar(tmp_path / "sub" / "mqar.npz", inputs, labels)
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    x, y = load_mqar(path)
    assert np.array_equal(x, inputs) and np.array_equal(y, labels)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mqar(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, inputs=np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="missing labels"):
        load_mqar(other)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not read MQAR file"):
        load_mqar(bad)
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, inputs=np.zeros((2, 4), np.int64), labels=np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError, match="must have one shape"):
        load_mqar(mismatch)
    with pytest.raises(ValueError, match="int64"):
        save_mqar(tmp_path / "x.npz", np.zeros((2, 4), np.int32), np.zeros((2, 4), np.int64))
