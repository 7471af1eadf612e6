"""LRA Image (sequential greyscale CIFAR-10): official loaders and a generated stand-in.

The Long-Range Arena *Image* task classifies a 32x32 greyscale image, read as
its 1,024 pixels in raster order, into 10 classes (docs/math.md §5.1). This module
reads the data sets the task can use and generates a stand-in when none is given.

**CIFAR-10, python version** (:func:`load_cifar10_batches`). The official
archive ``cifar-10-python.tar.gz`` unpacks to ``cifar-10-batches-py/`` with
the pickles ``data_batch_1`` ... ``data_batch_5`` (10,000 images each, the
50,000 training images in that order) and ``test_batch`` (10,000). Each pickle
is a dict with (byte-string) keys ``b"data"``, a ``uint8 [10000, 3072]`` array
whose row holds the red, green and blue 32x32 planes one after the other
(each plane row-major), and ``b"labels"``, a list of 10,000 ints 0-9 (other
keys, ``b"batch_label"`` and ``b"filenames"``, are ignored). The pickles
were written by Python 2, so they are read with ``encoding="bytes"``.
Unpickling can run arbitrary code, so a restricted unpickler is used: only
numpy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``) and
``_codecs.encode`` (how Python 3 writes bytes in a protocol-2 pickle) may be
referenced; any other global in the file is refused. The result's structure
(keys, dtypes, shapes, label range) is then checked, and every error names the
file and what is wrong.

*Greyscale as LRA.* LRA's input pipeline converts with
``tf.image.rgb_to_grayscale`` and casts to int32. That function (TensorFlow
``image_ops_impl``) does, in float32: ``x = uint8 * (1 / 255)``, ``g = x @
[0.2989, 0.5870, 0.1140]``, then ``convert_image_dtype(g, uint8)``, which
multiplies by ``255 + 0.5 = 255.5`` and *truncates* (a plain cast). So the
result is ``floor(255.5 * g)``, **not** ``round(255 * g)``: the two differ for
about half of the values below ~128 (e.g. RGB ``(0, 0, 93)``: ``255 g =
10.602``, TF gives 10, rounding 11); near the top ``255.5 / 255`` makes it
round (white ``(255, 255, 255)`` gives ``floor(255.474) = 255``, though the
weights sum to 0.9999). :func:`rgb_to_grey` reproduces that float32
computation; a value whose float32 result lands within an ulp of an integer
could differ by one from TensorFlow's if the dot product is summed in another
order (not observed; TensorFlow is not a dependency, so this was checked by
reading its source, not by running it).

**MNIST / Fashion-MNIST IDX files** (:func:`load_idx_folder`): a folder with
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
gzipped (``.gz``; the spelling ``train-images.idx3-ubyte`` is accepted as
well). Debian's package ``dataset-fashion-mnist`` installs the four gzipped
Fashion-MNIST files in ``/usr/share/datasets/fashion-mnist/``. An IDX file is
big-endian: two zero bytes, a type byte (``0x08`` = unsigned byte, the only
one accepted), the number of dimensions (3 for images, 1 for labels), one
uint32 per dimension, then the values; the loader checks all of it, and that
the file holds exactly the data its header announces. Images smaller than
32x32 (28x28 for MNIST) are zero-padded, centred, to 32x32 so a sequence is
1,024 tokens as for CIFAR-10. These are a convenience (LRA's Image task is
CIFAR-10; LRA's MNIST variant kept 28x28 and is not in the benchmark).

**Generated stand-in** (:func:`generate_shapes`) — *not CIFAR-10*: a deterministic
10-class set of greyscale shapes, for runs without any data (see the function).
"""

from __future__ import annotations

import codecs
import gzip
import logging
import math
import pickle
import struct
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_SIZE = 32
"""Side of the task's images (CIFAR-10 size; IDX images are padded to it)."""
NUM_CLASSES = 10
RGB_WEIGHTS = (0.2989, 0.5870, 0.1140)
"""``tf.image.rgb_to_grayscale``'s weights for red, green and blue."""
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
IDX_DEFAULT_FOLDER = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs its IDX files."""
SHAPE_CLASSES = ("disk", "ring", "square", "square outline", "triangle", "cross",
                 "horizontal bars", "vertical bars", "diagonal stripes", "checkerboard")
"""Class names of :func:`generate_shapes` (label ``i`` is ``SHAPE_CLASSES[i]``)."""

Arrays = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- greyscale


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """``tf.image.rgb_to_grayscale`` on uint8 ``[..., 3]``: uint8 ``[...]`` (see module doc)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"expected uint8 [..., 3] RGB values, got {rgb.dtype} {list(rgb.shape)}")
    f32 = np.float32
    x = rgb.astype(f32) * f32(1.0 / 255.0)
    w = [f32(v) for v in RGB_WEIGHTS]
    g = x[..., 0] * w[0] + x[..., 1] * w[1] + x[..., 2] * w[2]
    scaled = g * f32(255.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)  # the cast truncates, as TensorFlow's


# --------------------------------------------------------------------------- CIFAR-10


def _numpy_reconstruct():
    try:  # numpy >= 1.26 / 2.x
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - older numpy
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArrayUnpickler(pickle.Unpickler):
    """Refuses every global but numpy's array reconstruction (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        # protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1")
        ("_codecs", "encode"): lambda: codecs.encode,
    }

    def find_class(self, module, name):
        make = self._ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} "
                                         "(only numpy arrays are allowed)")
        return make()


def _get(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise ValueError(f"{path}: CIFAR-10 batch lacks the key b{key!r} "
                     f"(keys: {sorted(map(repr, batch))})")


def read_cifar10_batch(path: str | Path) -> Arrays:
    """One CIFAR-10 python batch: ``(rgb uint8 [n, 32, 32, 3], labels int64 [n])``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CIFAR-10 batch file does not exist")
    try:
        with open(path, "rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError, ImportError) as err:
        raise ValueError(f"{path}: not a readable CIFAR-10 python batch "
                         f"({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    data, labels = _get(batch, "data", path), _get(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        what = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: b'data' must be a uint8 array, got {what}")
    if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
        raise ValueError(f"{path}: b'data' must have shape [n, 3072] (32x32 RGB planes), "
                         f"got {list(data.shape)}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: b'labels' is not a list of ints ({err})") from None
    if labels.ndim != 1 or not (labels.dtype.kind in "iu" or labels.size == 0):
        raise ValueError(f"{path}: b'labels' must be a flat list of ints, got "
                         f"{labels.dtype} of shape {list(labels.shape)}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: labels must be 0-{NUM_CLASSES - 1}, found "
                         f"{labels.min()}..{labels.max()}")
    rgb = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(rgb), labels.astype(np.int64)


def cifar10_folder(folder: str | Path) -> Path:
    """``folder`` itself if it holds the CIFAR-10 batches, else its ``cifar-10-batches-py``."""
    folder = Path(folder)
    if (folder / CIFAR_TRAIN_FILES[0]).exists() or (folder / CIFAR_TEST_FILE).exists():
        return folder
    if (folder / CIFAR_FOLDER).is_dir():
        return folder / CIFAR_FOLDER
    return folder


def load_cifar10_batches(folder: str | Path) -> tuple[Arrays, Arrays]:
    """The official CIFAR-10 python release, in greyscale as LRA.

    ``folder``: ``cifar-10-batches-py/`` or the folder that contains it.
    Returns ``((train_images, train_labels), (test_images, test_labels))``:
    images ``uint8 [n, 32, 32]`` (:func:`rgb_to_grey`), labels ``int64 [n]``;
    train is ``data_batch_1`` ... ``data_batch_5`` in order (50,000), test
    ``test_batch`` (10,000).
    """
    root = cifar10_folder(folder)
    parts = []
    for names in (CIFAR_TRAIN_FILES, (CIFAR_TEST_FILE,)):
        rgb, labels = zip(*(read_cifar10_batch(root / name) for name in names))
        parts.append((rgb_to_grey(np.concatenate(rgb)), np.concatenate(labels)))
    return parts[0], parts[1]


# --------------------------------------------------------------------------- IDX


_IDX_NAMES = {"train_images": ("train-images", 3), "train_labels": ("train-labels", 1),
              "test_images": ("t10k-images", 3), "test_labels": ("t10k-labels", 1)}


def _idx_path(folder: Path, stem: str, ndim: int) -> Path:
    names = [f"{stem}{sep}idx{ndim}-ubyte{gz}" for sep in ("-", ".") for gz in ("", ".gz")]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder / names[0]}: IDX file does not exist "
                            f"(nor {', '.join(names[1:])})")


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX file (raw or ``.gz``) of ``ndim`` dimensions as a uint8 array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: IDX file does not exist")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: cannot read ({type(err).__name__}: {err})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    zero, kind, dims = struct.unpack(">HBB", raw[:4])
    magic = int.from_bytes(raw[:4], "big")
    if zero != 0 or kind != 0x08 or dims != ndim:
        raise ValueError(f"{path}: bad IDX magic number 0x{magic:08x}, expected "
                         f"0x{0x800 + ndim:08x} (unsigned bytes, {ndim} dimension(s))")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = math.prod(shape)
    if len(raw) - header != size:
        problem = "truncated" if len(raw) - header < size else "has trailing data"
        raise ValueError(f"{path}: {problem}: header says {list(shape)} = {size} values, "
                         f"the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def pad_to(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Zero-pad ``[n, h, w]`` images, centred, to ``[n, size, size]``."""
    n, h, w = images.shape
    if h > size or w > size:
        raise ValueError(f"images are {h}x{w}, larger than {size}x{size}")
    out = np.zeros((n, size, size), dtype=images.dtype)
    top, left = (size - h) // 2, (size - w) // 2
    out[:, top:top + h, left:left + w] = images
    return out


def load_idx_folder(folder: str | Path) -> tuple[Arrays, Arrays]:
    """MNIST-style IDX files (e.g. Fashion-MNIST from Debian, see module doc).

    Returns ``((train_images, train_labels), (test_images, test_labels))``,
    images ``uint8 [n, 32, 32]`` (padded, centred), labels ``int64 [n]`` in 0-9.
    """
    folder = Path(folder)
    paths = {k: _idx_path(folder, stem, nd) for k, (stem, nd) in _IDX_NAMES.items()}
    out = []
    for part in ("train", "test"):
        ipath, lpath = paths[f"{part}_images"], paths[f"{part}_labels"]
        images, labels = read_idx(ipath, 3), read_idx(lpath, 1)
        if len(images) != len(labels):
            raise ValueError(f"{ipath} holds {len(images)} images but {lpath} "
                             f"{len(labels)} labels")
        if images.shape[1] > IMAGE_SIZE or images.shape[2] > IMAGE_SIZE:
            raise ValueError(f"{ipath}: images are {images.shape[1]}x{images.shape[2]}, "
                             f"larger than {IMAGE_SIZE}x{IMAGE_SIZE}")
        if labels.size and labels.max() >= NUM_CLASSES:
            raise ValueError(f"{lpath}: labels must be 0-{NUM_CLASSES - 1}, found "
                             f"{labels.max()}")
        out.append((pad_to(images), labels.astype(np.int64)))
    return out[0], out[1]


# --------------------------------------------------------------------------- layout


def detect_layout(folder: str | Path) -> tuple[str, Path]:
    """``("cifar10", batches folder)`` or ``("idx", folder)`` for what ``folder`` holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: image data folder does not exist")
    cifar = cifar10_folder(folder)
    if any((cifar / name).exists() for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)):
        return "cifar10", cifar
    if any(folder.glob("train-images*idx3-ubyte*")):
        return "idx", folder
    hint = ""
    if any(folder.glob("cifar-10-python.tar.gz")):
        hint = "; unpack cifar-10-python.tar.gz first (tar xzf)"
    elif any(folder.glob("cifar-10-binary*")) or any(folder.glob("cifar-10-batches-bin")):
        hint = "; that is the binary release, use the python version (cifar-10-python.tar.gz)"
    raise ValueError(f"{folder}: neither CIFAR-10 python batches ({CIFAR_FOLDER}/data_batch_1"
                     f" ... test_batch) nor MNIST-style IDX files (train-images-idx3-ubyte[.gz]"
                     f" ...) found{hint}")


# --------------------------------------------------------------------------- generator


def _shape_masks(k: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points ``(u, v)`` (shape coordinates, v pointing down) are inside shape ``k``."""
    a, b = np.abs(u), np.abs(v)
    box = np.maximum(a, b)
    rho = np.sqrt(u * u + v * v)
    inner = box <= 0.9
    if k == 0:
        return rho <= 1.0
    if k == 1:
        return (rho <= 1.0) & (rho >= 0.6)
    if k == 2:
        return box <= 0.8
    if k == 3:
        return (box <= 0.9) & (box >= 0.45)
    if k == 4:   # apex up
        return (v >= -0.9) & (v <= 0.8) & (a <= (v + 0.9) / 1.7)
    if k == 5:
        return ((a <= 0.3) & (b <= 1.0)) | ((b <= 0.3) & (a <= 1.0))
    if k == 6:
        return inner & (np.floor((v + 0.9) / 0.36) % 2 == 0)
    if k == 7:
        return inner & (np.floor((u + 0.9) / 0.36) % 2 == 0)
    if k == 8:
        return (rho <= 1.0) & (np.floor((u + v) / 0.5) % 2 == 0)
    if k == 9:
        return inner & ((np.floor((u + 0.9) / 0.6) + np.floor((v + 0.9) / 0.6)) % 2 == 0)
    raise ValueError(k)


def _shape_geometry() -> tuple[np.ndarray, np.ndarray]:
    """Per class: area and bounding radius in shape coordinates (numerically)."""
    t = (np.arange(400) + 0.5) / 400 * 2.4 - 1.2
    u, v = np.meshgrid(t, t)
    cell = (2.4 / 400) ** 2
    area, radius = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES)
    for k in range(NUM_CLASSES):
        m = _shape_masks(k, u, v)
        area[k] = m.sum() * cell
        radius[k] = np.sqrt(u[m] ** 2 + v[m] ** 2).max()
    return area, radius


_AREA, _RADIUS = _shape_geometry()
# every class is scaled to the same mean area, so a class can't be told by how many pixels it lights
_AREA_SCALE = np.sqrt(_AREA.mean() / _AREA)
_SUPER = 2            # supersampling per axis (anti-aliased edges)
_CHUNK = 1024         # images generated together (bounds memory)
_DISTRACTORS = 6      # at most this many clutter strokes / blobs per image
SHAPE_STYLES = ("cluttered", "plain")
_PLAIN_SCALE = (8.0, 10.5)  # style "plain": px per shape unit at 32x32


def _render_chunk(rng: np.random.Generator, labels: np.ndarray, size: int,
                  style: str = "cluttered") -> np.ndarray:
    m, f = len(labels), np.float32
    if style == "plain":  # white on black; 2x2 anti-aliasing gives 5 grey levels
        scale = size / IMAGE_SIZE * rng.uniform(*_PLAIN_SCALE, m) * _AREA_SCALE[labels]
        return np.rint(255 * _shape_cover(rng, labels, size, scale)).astype(np.uint8)
    # ---- background: level, a gentle linear ramp, noise
    bg = rng.uniform(0, 255, m)
    contrast = rng.uniform(50, 190, m) * rng.choice([-1.0, 1.0], m)
    flip = (bg + contrast > 255) | (bg + contrast < 0)
    contrast[flip] *= -1
    fg = np.clip(bg + contrast, 0, 255)
    ramp_angle = rng.uniform(0, 2 * math.pi, m)
    ramp_amp = rng.uniform(0, 30, m) / size
    noise_sigma = rng.uniform(3, 20, m)
    yy, xx = np.meshgrid(np.arange(size, dtype=f), np.arange(size, dtype=f), indexing="ij")
    c0 = (size - 1) / 2
    ramp = (((yy - c0)[None] * np.sin(ramp_angle)[:, None, None]
             + (xx - c0)[None] * np.cos(ramp_angle)[:, None, None])
            * ramp_amp[:, None, None])
    image = (bg[:, None, None] + ramp).astype(f)

    # ---- clutter: short strokes and small blobs, same contrast law as the shape
    z = size / IMAGE_SIZE                          # geometry scales with the image side
    lo = max(1, round(3 * z))
    n_d = rng.integers(lo, max(lo, min(_DISTRACTORS, round(6 * z))) + 1, m)
    present = np.arange(_DISTRACTORS)[None] < n_d[:, None]                  # [m, D]
    is_blob = rng.random((m, _DISTRACTORS)) < 0.5
    length = np.where(is_blob, 0.0, z * rng.uniform(3, 8, (m, _DISTRACTORS)))
    width = np.maximum(np.where(is_blob, rng.uniform(0.9, 2.0, (m, _DISTRACTORS)),
                                rng.uniform(0.5, 0.9, (m, _DISTRACTORS))) * z, 0.3)
    y0 = rng.uniform(1, size - 2, (m, _DISTRACTORS))
    x0 = rng.uniform(1, size - 2, (m, _DISTRACTORS))
    ang = rng.uniform(0, math.pi, (m, _DISTRACTORS))
    y1, x1 = y0 + length * np.sin(ang), x0 + length * np.cos(ang)
    d_contrast = rng.uniform(40, 190, (m, _DISTRACTORS)) * np.sign(contrast)[:, None]
    d_val = np.clip(bg[:, None] + d_contrast, 0, 255)
    e = (..., None, None)
    y0, x0, vy, vx = (a.astype(f)[e] for a in (y0, x0, y1 - y0, x1 - x0))
    l2 = np.maximum(vy * vy + vx * vx, f(1e-9))
    ry, rx = yy - y0, xx - x0                                              # [m, D, size, size]
    t = np.clip((ry * vy + rx * vx) / l2, 0, 1)
    dist = np.hypot(ry - t * vy, rx - t * vx)
    cover = np.clip((width + 0.5).astype(f)[e] - dist, 0, 1) * present[e]
    for j in range(_DISTRACTORS):  # painted in order, later ones over earlier ones
        cj = cover[:, j].astype(f)
        image = image * (1 - cj) + d_val[:, j, None, None].astype(f) * cj

    # ---- the shape, painted last (always fully visible)
    scale = z * rng.uniform(5.0, 8.5, m) * _AREA_SCALE[labels]                 # px per shape unit
    cover = _shape_cover(rng, labels, size, scale)
    image = image * (1 - cover) + fg[:, None, None].astype(f) * cover
    image += rng.normal(0, 1, (m, size, size)).astype(f) * noise_sigma[:, None, None].astype(f)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _shape_cover(rng: np.random.Generator, labels: np.ndarray, size: int,
                 scale: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage [m, size, size] of the shapes at ``scale`` px per shape unit."""
    m, f = len(labels), np.float32
    yy, xx = np.meshgrid(np.arange(size, dtype=f), np.arange(size, dtype=f), indexing="ij")
    extent = np.minimum(scale * _RADIUS[labels] + 0.5, (size - 1) / 2)  # centred if too large
    cy = rng.uniform(extent, size - 1 - extent)
    cx = rng.uniform(extent, size - 1 - extent)
    theta = rng.uniform(-0.3, 0.3, m)
    offsets = (np.arange(_SUPER, dtype=f) + 0.5) / _SUPER - 0.5
    cover = np.zeros((m, size, size), dtype=f)
    for k in range(NUM_CLASSES):
        idx = np.flatnonzero(labels == k)
        if idx.size == 0:
            continue
        cos, sin = np.cos(theta[idx])[:, None, None], np.sin(theta[idx])[:, None, None]
        s = scale[idx][:, None, None]
        acc = np.zeros((idx.size, size, size), dtype=f)
        for oy in offsets:
            for ox in offsets:
                dy = (yy + oy)[None] - cy[idx][:, None, None]
                dx = (xx + ox)[None] - cx[idx][:, None, None]
                u = (dx * cos + dy * sin) / s
                w = (-dx * sin + dy * cos) / s
                acc += _shape_masks(k, u, w)
        cover[idx] = acc / _SUPER ** 2
    return cover


def generate_shapes(n: int, seed: int, size: int = IMAGE_SIZE,
                    style: str = "cluttered") -> Arrays:
    """A generated 10-class greyscale image set: the stand-in for CIFAR-10 (it is **not** CIFAR-10).

    Returns ``(images uint8 [n, size, size], labels int64 [n])``. Label ``k`` is the shape
    :data:`SHAPE_CLASSES` ``[k]``: disk, ring, filled square, square outline, triangle (apex
    up), plus-shaped cross, horizontal bars, vertical bars, diagonal stripes, 3x3
    checkerboard. Each image (style ``"cluttered"``, the default) has

    - a background of random level (0-255) with a gentle linear ramp of random
      direction (up to 30 grey levels across the image);
    - 3-6 distractors (short strokes of 3-8 px and small blobs of radius 1-2 px) at random
      places, of the shape's polarity (brighter or darker than the background), random contrast;
    - the shape, painted last, of random size (5-8.5 px per shape unit, about
      10-20 px across), position (fully inside the image), rotation (within
      ±0.3 rad, so horizontal and vertical bars stay distinct) and contrast
      (50-190 grey levels, random sign), anti-aliased by 2x2 supersampling.
      Each class is scaled by a fixed factor that gives all classes the same
      mean area, so the count of lit pixels does not tell the class;
    - Gaussian pixel noise of random strength (sigma 3-20).

    ``style="plain"`` (``lite``'s) keeps only the shape, larger (8-10.5 px per shape
    unit at 32x32, scaled with the side), white on black (5 grey levels with its
    anti-aliased edges): no clutter, ramp, noise or random contrast, so few tokens occur.

    The class is in the *arrangement* of pixels (edges, holes, periodicity, orientation), not
    in their histogram; with random position the model has to relate pixels far apart in the
    1,024-token sequence (a row apart is 32 tokens). Labels are balanced (every class ``n // 10`` or ``n // 10 + 1``
    times) and shuffled. All randomness comes from ``numpy.random.Generator`` streams derived
    from ``seed``: the same ``(n, seed, size, style)`` give identical arrays (same numpy).
    """
    for name, value, low in (("n", n, 0), ("seed", seed, 0), ("size", size, 16)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if style not in SHAPE_STYLES:
        raise ValueError(f"style must be one of {SHAPE_STYLES}, got {style!r}")
    n_chunks = -(-n // _CHUNK)
    label_seq, *chunk_seqs = np.random.SeedSequence(int(seed)).spawn(1 + n_chunks)
    labels = np.random.default_rng(label_seq).permutation(np.arange(n) % NUM_CLASSES)
    images = np.zeros((n, size, size), dtype=np.uint8)
    for c in range(n_chunks):
        sl = slice(c * _CHUNK, min(n, (c + 1) * _CHUNK))
        images[sl] = _render_chunk(np.random.default_rng(chunk_seqs[c]), labels[sl], size,
                                   style)
    return images, labels.astype(np.int64)
