"""LRA Image data: CIFAR-10 python batches and IDX files written here in the
official formats (round trip, greyscale as TensorFlow, malformed files), the
generated shapes stand-in (seeds, balance, range, not separable by histogram)."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from leapformer.data.image import (
    IMAGE_SIZE,
    SHAPE_CLASSES,
    detect_layout,
    generate_shapes,
    load_cifar10_batches,
    load_idx_folder,
    read_idx,
    rgb_to_grey,
)

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


# ----------------------------------------------------------------- fixture writers


def cifar_batch_bytes(rgb: np.ndarray, labels, *, numpy_module: str | None = None,
                      replace: dict | None = None) -> bytes:
    """A pickle laid out as the official python batches (Python 2 era: byte keys,
    protocol 2, data rows = red, green, blue 32x32 planes, each row-major)."""
    data = np.ascontiguousarray(rgb.transpose(0, 3, 1, 2).reshape(len(rgb), -1))
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [int(y) for y in labels],
             b"data": data, b"filenames": [b"img_%d.png" % i for i in range(len(rgb))]}
    batch.update(replace or {})
    raw = pickle.dumps(batch, protocol=2)
    if numpy_module is not None:  # the original files name numpy.core.multiarray
        raw = raw.replace(b"numpy._core.multiarray", numpy_module.encode())
        raw = raw.replace(b"numpy.core.multiarray", numpy_module.encode())
    return raw


def write_cifar(folder, n_per_batch: int = 4, seed: int = 0, numpy_module=None):
    """``folder/cifar-10-batches-py`` with 5 train batches and a test batch; returns
    the RGB arrays and labels written, train (in batch order) and test."""
    rng = np.random.default_rng(seed)
    root = folder / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rgbs, labels = [], []
    for name in BATCHES:
        rgb = rng.integers(0, 256, (n_per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, n_per_batch)
        (root / name).write_bytes(cifar_batch_bytes(rgb, y, numpy_module=numpy_module))
        rgbs.append(rgb)
        labels.append(y)
    train = (np.concatenate(rgbs[:5]), np.concatenate(labels[:5]))
    return root, train, (rgbs[5], labels[5])


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x800 + array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.tobytes()


def write_idx(folder, n_train=7, n_test=3, side=28, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        for kind, arr, nd in (("images", images, 3), ("labels", labels, 1)):
            raw = idx_bytes(arr)
            name = f"{part}-{kind}-idx{nd}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        out[part] = (images, labels)
    return out


# ----------------------------------------------------------------- greyscale


def tf_grey_reference(rgb: np.ndarray) -> np.ndarray:
    """Independent float64 evaluation of tf.image.rgb_to_grayscale on uint8:
    floor(255.5 * (0.2989 r + 0.5870 g + 0.1140 b) / 255)."""
    r, g, b = (rgb[..., i].astype(np.float64) / 255.0 for i in range(3))
    return np.floor((0.2989 * r + 0.5870 * g + 0.1140 * b) * 255.5)


def test_greyscale_known_values():
    rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                    [0, 0, 93], [128, 128, 128]], dtype=np.uint8)
    got = rgb_to_grey(rgb).tolist()
    # floor(255.5 * w . x / 255): 76.37, 149.97, 29.13, 10.62 and 128.2 (not rounding:
    # (0, 0, 93) gives 255 g = 10.60, which would round to 11)
    assert got == [0, 255, 76, 149, 29, 10, 128]


def test_greyscale_matches_independent_formula_on_all_levels():
    rng = np.random.default_rng(1)
    rgb = np.concatenate([rng.integers(0, 256, (20_000, 3)),
                          np.repeat(np.arange(256)[:, None], 3, axis=1)]).astype(np.uint8)
    ours = rgb_to_grey(rgb).astype(np.int64)
    ref64 = (0.2989 * rgb[:, 0] + 0.5870 * rgb[:, 1] + 0.1140 * rgb[:, 2]) / 255 * 255.5
    ref = tf_grey_reference(rgb).astype(np.int64)
    near_integer = np.abs(ref64 - np.rint(ref64)) < 1e-4  # float32 vs float64 may differ there
    np.testing.assert_array_equal(ours[~near_integer], ref[~near_integer])
    assert np.abs(ours - ref).max() <= 1
    assert (~near_integer).sum() > 19_000
    # and it is not plain rounding: they differ on many values
    assert (ours != np.rint(ref64 * 255 / 255.5)).sum() > 1000


# ----------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("numpy_module", [None, "numpy.core.multiarray"])
def test_cifar_round_trip(tmp_path, numpy_module):
    root, (train_rgb, train_y), (test_rgb, test_y) = write_cifar(tmp_path, numpy_module=numpy_module)
    for folder in (root, tmp_path):  # the batches folder or the one that contains it
        (tx, ty), (sx, sy) = load_cifar10_batches(folder)
        assert tx.shape == (20, 32, 32) and tx.dtype == np.uint8
        assert sx.shape == (4, 32, 32) and ty.dtype == np.int64
        np.testing.assert_array_equal(ty, train_y)
        np.testing.assert_array_equal(sy, test_y)
        # the planes are R, G, B: checked against the independent formula per pixel
        for got, rgb in ((tx, train_rgb), (sx, test_rgb)):
            ref = tf_grey_reference(rgb)
            assert np.abs(got.astype(np.int64) - ref).max() <= 1
            assert (got == ref).mean() > 0.999
    assert detect_layout(tmp_path) == ("cifar10", root)
    assert detect_layout(root) == ("cifar10", root)


def test_cifar_channel_order_matters(tmp_path):
    """A pure-red image must come out as 0.2989 * 255.5, not the blue weight."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    red = np.zeros((1, 32, 32, 3), np.uint8)
    red[..., 0] = 255
    red[0, 0, 1] = (0, 0, 255)          # one blue pixel at row 0, column 1
    for name in BATCHES:
        (root / name).write_bytes(cifar_batch_bytes(red, [3]))
    (tx, ty), _ = load_cifar10_batches(root)
    assert tx[0, 0, 0] == 76 and tx[0, 0, 1] == 29 and tx[0, 1, 0] == 76
    assert ty.tolist() == [3] * 5


def _only_batch(tmp_path, raw: bytes, name="data_batch_2"):
    root, _, _ = write_cifar(tmp_path)
    (root / name).write_bytes(raw)
    return root


def _rgb(n=2):
    return np.zeros((n, 32, 32, 3), np.uint8)


@pytest.mark.parametrize("raw, message", [
    (cifar_batch_bytes(_rgb(), [0, 1])[:-40], "not a readable CIFAR-10 python batch"),
    (b"", "not a readable CIFAR-10 python batch"),
    (pickle.dumps([1, 2, 3], protocol=2), "expected a pickled dict"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2), "lacks the key b'labels'"),
    (pickle.dumps({b"labels": [0]}, protocol=2), "lacks the key b'data'"),
    (cifar_batch_bytes(_rgb(), [0, 1], replace={b"data": np.zeros((2, 3000), np.uint8)}),
     r"shape \[n, 3072\].*\[2, 3000\]"),
    (cifar_batch_bytes(_rgb(), [0, 1], replace={b"data": np.zeros((2, 3072), np.float32)}),
     "must be a uint8 array"),
    (cifar_batch_bytes(_rgb(), [0, 10]), "labels must be 0-9"),
    (cifar_batch_bytes(_rgb(), [0, -1]), "labels must be 0-9"),
    (cifar_batch_bytes(_rgb(), [0, 1, 2]), "2 images but 3 labels"),
    (cifar_batch_bytes(_rgb(), [0, 1], replace={b"labels": ["a", "b"]}), "flat list of ints"),
])
def test_cifar_malformed_batches_name_the_file(tmp_path, raw, message):
    root = _only_batch(tmp_path, raw)
    with pytest.raises(ValueError, match=message) as err:
        load_cifar10_batches(root)
    assert str(root / "data_batch_2") in str(err.value)


def test_cifar_refuses_code_in_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    root = _only_batch(tmp_path, pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2),
                       name="test_batch")
    with pytest.raises(ValueError, match=r"refusing to load (__builtin__|builtins)\.print") as err:
        load_cifar10_batches(root)
    assert str(root / "test_batch") in str(err.value)


def test_cifar_missing_batch(tmp_path):
    root, _, _ = write_cifar(tmp_path)
    (root / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4: CIFAR-10 batch file does not exist"):
        load_cifar10_batches(tmp_path)


# ----------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_padded_centred(tmp_path, gz):
    written = write_idx(tmp_path / "fm", gz=gz)
    (tx, ty), (sx, sy) = load_idx_folder(tmp_path / "fm")
    assert tx.shape == (7, 32, 32) and sx.shape == (3, 32, 32) and tx.dtype == np.uint8
    for (x, y), (images, labels) in (((tx, ty), written["train"]), ((sx, sy), written["t10k"])):
        np.testing.assert_array_equal(x[:, 2:30, 2:30], images)
        assert x[:, :2].sum() == 0 and x[:, 30:].sum() == 0
        assert x[:, :, :2].sum() == 0 and x[:, :, 30:].sum() == 0
        np.testing.assert_array_equal(y, labels)
        assert y.dtype == np.int64
    assert detect_layout(tmp_path / "fm") == ("idx", tmp_path / "fm")


def test_idx_odd_sizes_and_dot_names(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (2, 27, 32), dtype=np.uint8)
    for part in ("train", "t10k"):
        (folder / f"{part}-images.idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{part}-labels.idx1-ubyte").write_bytes(idx_bytes(np.array([4, 9])))
    (tx, ty), _ = load_idx_folder(folder)
    np.testing.assert_array_equal(tx[:, 2:29, :], images)   # 5 rows of padding: 2 above, 3 below
    assert tx[:, :2].sum() == 0 and tx[:, 29:].sum() == 0
    assert ty.tolist() == [4, 9]


def _corrupt(tmp_path, name, raw):
    folder = tmp_path / "fm"
    write_idx(folder)
    (folder / name).write_bytes(raw)
    return folder


IMAGES = np.zeros((7, 28, 28), np.uint8)


@pytest.mark.parametrize("name, raw, message", [
    ("train-images-idx3-ubyte", idx_bytes(IMAGES, magic=0x803 + 0x100), "bad IDX magic number"),
    ("train-images-idx3-ubyte", idx_bytes(IMAGES, magic=0x0D03), "bad IDX magic number"),
    ("train-images-idx3-ubyte", idx_bytes(IMAGES[:, 0]), r"bad IDX magic.*0x00000803"),
    ("train-images-idx3-ubyte", idx_bytes(IMAGES)[:-5], "truncated: header says"),
    ("train-images-idx3-ubyte", idx_bytes(IMAGES)[:9], "truncated IDX header"),
    ("train-images-idx3-ubyte", b"\x00\x00", "truncated IDX file"),
    ("train-images-idx3-ubyte", idx_bytes(IMAGES) + b"\x00", "has trailing data"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 2, 12])), "labels must be 0-9"),
    ("t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 2])), "3 images but .* 2 labels"),
    ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((3, 33, 28), np.uint8)), "larger than 32x32"),
])
def test_idx_malformed_files_name_the_file(tmp_path, name, raw, message):
    folder = _corrupt(tmp_path, name, raw)
    with pytest.raises(ValueError, match=message) as err:
        load_idx_folder(folder)
    assert name in str(err.value)


def test_idx_gz_errors_and_missing_files(tmp_path):
    folder = tmp_path / "fm"
    write_idx(folder, gz=True)
    good = gzip.compress(idx_bytes(IMAGES))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(good[:-12])  # truncated stream
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: cannot read"):
        load_idx_folder(folder)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: cannot read"):
        load_idx_folder(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte: IDX file does not exist"):
        load_idx_folder(folder)
    with pytest.raises(FileNotFoundError, match="nope: IDX file does not exist"):
        read_idx(tmp_path / "nope", 1)


def test_detect_layout_errors(tmp_path):
    with pytest.raises(ValueError, match="image data folder does not exist"):
        detect_layout(tmp_path / "missing")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="neither CIFAR-10 .* unpack cifar-10-python.tar.gz"):
        detect_layout(tmp_path)


# ----------------------------------------------------------------- generator


def test_generator_shapes_range_and_reproducibility():
    a, ya = generate_shapes(120, seed=5)
    b, yb = generate_shapes(120, seed=5)
    c, yc = generate_shapes(120, seed=6)
    assert a.shape == (120, IMAGE_SIZE, IMAGE_SIZE) and a.dtype == np.uint8
    assert ya.shape == (120,) and ya.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a, c) and not np.array_equal(ya, yc)
    assert set(ya.tolist()) == set(range(len(SHAPE_CLASSES)))
    assert a.min() < 30 and a.max() > 225        # the full grey range is used
    assert len({im.tobytes() for im in a}) == 120
    small, ys = generate_shapes(30, seed=5, size=16)
    assert small.shape == (30, 16, 16) and ys.shape == (30,)
    empty, ye = generate_shapes(0, seed=0)
    assert empty.shape == (0, 32, 32) and ye.shape == (0,)


@pytest.mark.parametrize("n", [1, 9, 25, 1030])
def test_generator_labels_balanced(n):
    _, y = generate_shapes(n, seed=n)
    counts = np.bincount(y, minlength=10)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert y.min() >= 0 and y.max() <= 9


def test_plain_style_white_shapes_on_black():
    a, ya = generate_shapes(300, seed=4, size=16, style="plain")
    b, yb = generate_shapes(300, seed=4, size=16, style="plain")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert a.shape == (300, 16, 16) and np.bincount(ya, minlength=10).tolist() == [30] * 10
    assert set(np.unique(a).tolist()) == {0, 64, 128, 191, 255}   # 2x2 anti-aliasing levels
    lit = (a > 0).reshape(300, -1).sum(1)
    assert lit.min() >= 16 and lit.max() <= 200                     # a shape, inside the image
    # the default style is unchanged by the option: same labels, other pixels
    c, yc = generate_shapes(300, seed=4, size=16)
    np.testing.assert_array_equal(ya, yc)
    assert len(np.unique(c)) > 100


def test_generator_argument_errors():
    with pytest.raises(ValueError, match="n must be >= 0"):
        generate_shapes(-1, seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        generate_shapes(3, seed=1.5)
    with pytest.raises(ValueError, match="size must be >= 16"):
        generate_shapes(3, seed=0, size=8)
    with pytest.raises(ValueError, match="style must be one of"):
        generate_shapes(3, seed=0, style="clean")


def _nearest_centroid_accuracy(features, labels, n_fit):
    centroids = np.stack([features[:n_fit][labels[:n_fit] == k].mean(0) for k in range(10)])
    d = ((features[n_fit:, None] - centroids[None]) ** 2).sum(-1)
    return (d.argmin(1) == labels[n_fit:]).mean()


def test_classes_are_not_told_by_histograms_but_by_arrangement():
    images, labels = generate_shapes(2000, seed=11)
    # histogram of grey levels relative to the image median (shift-invariant): weak
    rel = images.reshape(len(images), -1).astype(np.int64) - np.median(
        images.reshape(len(images), -1), axis=1, keepdims=True).astype(np.int64)
    hist = np.stack([np.histogram(np.abs(r), bins=16, range=(0, 256))[0] for r in rel]) / 1024
    hist_acc = _nearest_centroid_accuracy(hist, labels, 1500)
    # the 2-D power spectrum (translation-invariant, keeps orientation and period): strong
    x = images.astype(np.float64)
    x -= x.mean(axis=(1, 2), keepdims=True)
    spec = np.abs(np.fft.fft2(x)).reshape(len(x), -1)
    spec /= np.linalg.norm(spec, axis=1, keepdims=True)
    spec_acc = _nearest_centroid_accuracy(spec, labels, 1500)
    assert hist_acc < 0.3, hist_acc
    assert spec_acc > hist_acc + 0.1, (spec_acc, hist_acc)
