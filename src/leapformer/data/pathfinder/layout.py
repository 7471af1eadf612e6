"""The official Pathfinder folder layout of the LRA release.

**Official layout** (:func:`load_pathfinder_dir`, :func:`save_pathfinder_dir`).
The LRA release ``lra_release/pathfinder32/<difficulty>/`` holds
``imgs/<k>/sample_<i>.png`` (8-bit greyscale PNG, 32x32) and
``metadata/<k>.npy``. Despite the suffix, a metadata file is *text* (LRA's
input pipeline decodes it as UTF-8 and splits it on newlines and spaces): one
line per image, fields ``<image dir> <file name> <index> <label> ...``, e.g.
``imgs/0 sample_0.png 0 1 ...``, where ``<image dir>`` is relative to
``<difficulty>/`` and only fields 0, 1 and 3 are used; the original generator's
remaining fields (continuity, contour length, ...) may follow. A metadata file
saved with ``numpy.save`` as a 2-D string array is read as well. The release
contains a few empty (0-byte) PNGs, which LRA's pipeline skips; so does the
loader (with a logged warning) unless ``skip_empty=False``.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from leapformer._io import atomic_open
from leapformer.data._png import decode_png, encode_png
from leapformer.data.pathfinder.common import (
    DEFAULT_DIFFICULTY,
    DIFFICULTIES,
    PATHFINDER_SIZE,
    _check_int,
)

logger = logging.getLogger(__name__)

def _check_difficulty(difficulty) -> str:
    if not isinstance(difficulty, str):
        raise TypeError(f"difficulty must be a str, got {type(difficulty).__name__}")
    if not difficulty or difficulty in (".", "..") or "/" in difficulty or "\\" in difficulty:
        raise ValueError(f"difficulty must be a folder name such as {DIFFICULTIES[-1]!r}, "
                         f"got {difficulty!r}")
    return difficulty


def _metadata_key(path: Path):
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)


def _metadata_rows(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of a metadata file: text (the LRA release) or a
    2-D string array written by ``numpy.save`` (the original generator)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read metadata file: {err}") from None
    if raw.startswith(b"\x93NUMPY"):
        try:
            table = np.load(io.BytesIO(raw), allow_pickle=False)
        except Exception as err:  # corrupt header, object array, ...
            raise ValueError(f"{path}: unreadable .npy metadata: {err}") from None
        if table.ndim != 2 or table.dtype.kind not in "US":
            raise ValueError(f"{path}: .npy metadata must be a 2-D string array, "
                             f"got {table.dtype} of shape {list(table.shape)}")
        return [(i + 1, [v.decode() if isinstance(v, bytes) else str(v) for v in row])
                for i, row in enumerate(table.tolist())]
    rows = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{path}:{lineno}: not UTF-8 text (expected lines like "
                             "'imgs/0 sample_0.png 0 1')") from None
        if text:
            rows.append((lineno, text.split()))
    return rows


def _relative_image_path(path: Path, lineno: int, fields: list[str]) -> PurePosixPath:
    rel = PurePosixPath(fields[0].replace("\\", "/")) / fields[1]
    if rel.is_absolute() or ".." in rel.parts or fields[1] in ("", ".", ".."):
        raise ValueError(f"{path}:{lineno}: image path {str(rel)!r} must stay inside the "
                         "difficulty folder")
    return rel


def _grey(pixels: np.ndarray, image: Path, where: str, size: int) -> np.ndarray:
    h, w, ch = pixels.shape
    if (h, w) != (size, size):
        raise ValueError(f"{image} ({where}): image is {h}x{w} (height x width), expected "
                         f"{size}x{size}")
    if ch in (1, 2):                       # grey, grey + alpha
        return pixels[..., 0]
    if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all():
        return pixels[..., 0]              # grey stored as RGB(A)
    raise ValueError(f"{image} ({where}): colour image; Pathfinder images are greyscale")


def load_pathfinder_dir(
    root: str | os.PathLike,
    *,
    difficulty: str = DEFAULT_DIFFICULTY,
    size: int = PATHFINDER_SIZE,
    limit: int | None = None,
    skip_empty: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a Pathfinder release folder (e.g. ``lra_release/pathfinder32``).

    Reads ``root/<difficulty>/metadata/*.npy`` (in the numeric order of their
    names, rows in file order) and the PNGs they list, relative to
    ``root/<difficulty>/``. Returns ``(images uint8 [n, size, size], labels
    int64 [n])``. ``limit``: stop after that many images. ``skip_empty``: skip
    0-byte PNGs (present in the LRA release, skipped by its pipeline) with a
    logged warning; ``False`` raises instead.

    Raises ``ValueError`` naming the folder or file (and ``metadata:line``) for a
    missing folder, no metadata files, a malformed row (fewer than 4 fields, a
    label other than 0/1, a path leaving the folder), a missing, unreadable,
    non-greyscale or wrongly sized image, or no images at all.
    """
    difficulty = _check_difficulty(difficulty)
    size = _check_int("size", size, 1)
    if limit is not None:
        limit = _check_int("limit", limit, 1)
    if not isinstance(skip_empty, bool):
        raise TypeError(f"skip_empty must be a bool, got {type(skip_empty).__name__}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: Pathfinder folder does not exist")
    base = root / difficulty
    if not base.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise ValueError(f"{base}: no such difficulty folder (found: {', '.join(found) or 'none'})")
    meta_dir = base / "metadata"
    if not meta_dir.is_dir():
        raise ValueError(f"{meta_dir}: metadata folder does not exist")
    meta_files = sorted((p for p in meta_dir.iterdir() if p.suffix == ".npy" and p.is_file()),
                        key=_metadata_key)
    if not meta_files:
        raise ValueError(f"{meta_dir}: no metadata files (*.npy)")

    start = time.perf_counter()
    images: list[np.ndarray] = []
    labels: list[int] = []
    empty: list[str] = []
    for meta in meta_files:
        for lineno, fields in _metadata_rows(meta):
            where = f"{meta}:{lineno}"
            if len(fields) < 4:
                raise ValueError(f"{where}: expected at least 4 space-separated fields "
                                 f"(image folder, file name, index, label), got {len(fields)}: "
                                 f"{' '.join(fields)[:80]!r}")
            if fields[3] not in ("0", "1"):
                raise ValueError(f"{where}: label (field 4) must be 0 or 1, got {fields[3]!r}")
            image = base / _relative_image_path(meta, lineno, fields)
            try:
                data = image.read_bytes()
            except FileNotFoundError:
                raise ValueError(f"{image} (listed at {where}): image file does not exist") \
                    from None
            except OSError as err:
                raise ValueError(f"{image} (listed at {where}): cannot read: {err}") from None
            if not data and skip_empty:
                empty.append(str(image))
                continue
            try:
                pixels = decode_png(data)
            except ValueError as err:
                raise ValueError(f"{image} (listed at {where}): unreadable PNG: {err}") from None
            images.append(_grey(pixels, image, f"listed at {where}", size))
            labels.append(int(fields[3]))
            if limit is not None and len(images) >= limit:
                break
        if limit is not None and len(images) >= limit:
            break
    if empty:
        logger.warning("skipped %d empty image file(s) in %s (as LRA's pipeline does), e.g. %s",
                       len(empty), base, empty[0])
    if not images:
        raise ValueError(f"{base}: the metadata lists no readable images")
    logger.info("read %d Pathfinder images from %s in %.2f s", len(images), base,
                time.perf_counter() - start)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_open(path) as fh:
        fh.write(data)


def save_pathfinder_dir(
    images: np.ndarray,
    labels: np.ndarray | Sequence[int],
    root: str | os.PathLike,
    *,
    difficulty: str = DEFAULT_DIFFICULTY,
    images_per_dir: int = 1000,
    overwrite: bool = False,
) -> Path:
    """Write images and labels in the layout of the LRA release (module docstring).

    ``images``: uint8 ``[n, height, width]``; ``labels``: ``n`` values 0/1.
    Image ``j`` goes to ``root/<difficulty>/imgs/<k>/sample_<i>.png`` with
    ``k, i = divmod(j, images_per_dir)``, listed in ``metadata/<k>.npy`` as
    ``imgs/<k> sample_<i>.png <i> <label>`` (the four fields LRA reads). Existing
    metadata files raise ``ValueError`` unless ``overwrite=True`` (which replaces
    them; stale PNGs are left but no longer listed). Returns the difficulty folder.
    """
    difficulty = _check_difficulty(difficulty)
    images_per_dir = _check_int("images_per_dir", images_per_dir, 1)
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    if images.ndim != 3 or images.shape[0] == 0 or 0 in images.shape[1:]:
        raise ValueError(f"images must be a non-empty [n, height, width] array, "
                         f"got shape {list(images.shape)}")
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}] (one per image), "
                         f"got {list(labels.shape)}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise TypeError(f"labels must be integers 0/1, got {labels.dtype}")
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = sorted(set(labels.tolist()) - {0, 1})[:5]
        raise ValueError(f"labels must be 0 or 1, got values {bad}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")

    base = Path(root) / difficulty
    meta_dir = base / "metadata"
    old = sorted(meta_dir.glob("*.npy")) if meta_dir.is_dir() else []
    if old and not overwrite:
        raise ValueError(f"{meta_dir}: already holds {len(old)} metadata file(s); "
                         "pass overwrite=True to replace them")
    meta_dir.mkdir(parents=True, exist_ok=True)
    for path in old:
        path.unlink()
    n = images.shape[0]
    for k in range(-(-n // images_per_dir)):
        sub = f"imgs/{k}"
        (base / sub).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(min(images_per_dir, n - k * images_per_dir)):
            j = k * images_per_dir + i
            name = f"sample_{i}.png"
            _atomic_write(base / sub / name, encode_png(images[j]))
            lines.append(f"{sub} {name} {i} {int(labels[j])}\n")
        _atomic_write(meta_dir / f"{k}.npy", "".join(lines).encode("ascii"))
    logger.info("wrote %d Pathfinder images to %s", n, base)
    return base
