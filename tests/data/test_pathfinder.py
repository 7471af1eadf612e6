"""Pathfinder: the generator (balanced labels, seeds, markers, connectivity read
off the pixels by an independent flood fill), the official LRA directory layout
(round trip, malformed fixtures), pixel tokens and the PNG codec."""

from __future__ import annotations

import logging
import struct
import zlib
from collections import deque

import numpy as np
import pytest
import torch

from leapformer.data._png import decode_png, encode_png
from leapformer.data.pathfinder import (
    DEFAULT_DIFFICULTY,
    PIXEL_VOCAB_SIZE,
    generate_pathfinder,
    load_pathfinder_dir,
    pathfinder_tokens,
    save_pathfinder_dir,
)

N = 300


@pytest.fixture(scope="module")
def sample():
    return generate_pathfinder(N, seed=1234, return_info=True)


# ----------------------------------------------------------------- independent flood fill


def _components(image: np.ndarray, threshold: int) -> np.ndarray:
    """Labels of the 8-connected components of pixels >= threshold (0 = unlit)."""
    lit = image >= threshold
    comp = np.zeros(image.shape, dtype=np.int64)
    h, w = image.shape
    count = 0
    for r0, c0 in zip(*np.nonzero(lit)):
        if comp[r0, c0]:
            continue
        count += 1
        comp[r0, c0] = count
        queue = deque([(r0, c0)])
        while queue:
            r, c = queue.popleft()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and lit[rr, cc] and not comp[rr, cc]:
                        comp[rr, cc] = count
                        queue.append((rr, cc))
    return comp


def _pixel(point) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


# ----------------------------------------------------------------- generator


def test_shapes_and_dtypes(sample):
    images, labels, info = sample
    assert images.shape == (N, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (N,) and labels.dtype == np.int64
    assert info.markers.shape == (N, 2, 2)
    assert info.snake_ends.shape == (N, 2, 2, 2)
    assert info.num_distractors.shape == (N,)
    empty, empty_labels = generate_pathfinder(0, seed=0)
    assert empty.shape == (0, 32, 32) and empty_labels.shape == (0,)


@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_labels_exactly_balanced(n):
    _, labels = generate_pathfinder(n, seed=n)
    assert set(labels.tolist()) <= {0, 1}
    assert labels.sum() == n // 2 and (labels == 0).sum() == n - n // 2


def test_labels_are_shuffled(sample):
    _, labels, _ = sample
    assert labels.sum() == N // 2
    assert not (labels[: N // 2] == 1).all()       # not all positives first


def test_seed_reproduces_and_different_seed_differs():
    a = generate_pathfinder(40, seed=7, return_info=True)
    b = generate_pathfinder(40, seed=7, return_info=True)
    c = generate_pathfinder(40, seed=8, return_info=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2].markers, b[2].markers)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[2].markers, c[2].markers)


def test_marker_pixels_are_bright_blobs(sample):
    images, _, info = sample
    for image, markers in zip(images, info.markers):
        for point in markers:
            r, c = _pixel(point)
            assert 1 <= r <= 30 and 1 <= c <= 30        # 1 px padding
            assert image[r, c] == 255
            # radius 1.5 drawn with a 0.5 px soft edge: the centre and its 4 neighbours are lit
            for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                assert image[r + dr, c + dc] >= 64


def test_markers_sit_on_the_snake_ends_the_label_says(sample):
    _, labels, info = sample
    ends = info.snake_ends
    np.testing.assert_array_equal(info.markers[:, 0], ends[:, 0, 0])
    expected = np.where(labels[:, None] == 1, ends[:, 0, 1], ends[:, 1, 1])
    np.testing.assert_array_equal(info.markers[:, 1], expected)
    # the two origins are seed_distance (7 px) apart, on pixel centres
    dist = np.linalg.norm(ends[:, 0, 0] - ends[:, 1, 0], axis=-1)
    assert np.all(np.abs(dist - 7) <= 0.75)
    np.testing.assert_array_equal(ends[:, :, 0], np.round(ends[:, :, 0]))


def test_flood_fill_from_one_marker_reaches_the_other_exactly_when_connected(sample):
    images, labels, info = sample
    for threshold in (1, 128):
        comps = [_components(img, threshold) for img in images]
        reached = np.array([comp[_pixel(m[0])] == comp[_pixel(m[1])] != 0
                            for comp, m in zip(comps, info.markers)])
        assert reached[labels == 1].all(), f"threshold {threshold}"
        # Threshold for the unconnected samples: all of them. Not "a good share",
        # because the generator never lets pixels lit by two different objects
        # (snakes, markers) be 8-adjacent, so no unconnected pair can touch; a
        # failure here means two snakes touch and the label is wrong.
        assert not reached[labels == 0].any(), f"threshold {threshold}"
        # and the fill does cover a whole snake: from the origin to its own far end
        # (a pixel next to it: an end without a marker may fall between pixel centres)
        for comp, m, e in zip(comps, info.markers, info.snake_ends):
            r, c = _pixel(e[0, 1])
            assert comp[_pixel(m[0])] in comp[r - 1:r + 2, c - 1:c + 2], f"threshold {threshold}"


def test_every_snake_is_its_own_component(sample):
    images, _, info = sample
    assert info.num_distractors.mean() >= 4.5           # LRA's 20 // 4 = 5 are asked for
    for image, k in zip(images[:100], info.num_distractors[:100]):
        assert _components(image, 1).max() == 2 + k     # two targets + k distractors


def test_without_distractors_only_the_two_targets_remain():
    images, _, info = generate_pathfinder(30, seed=3, num_distractors=0, return_info=True)
    assert (info.num_distractors == 0).all()
    assert all(_components(img, 1).max() == 2 for img in images)


def test_snakes_are_drawn(sample):
    images, _, _ = sample
    bright = (images >= 128).sum(axis=(1, 2))
    # 2 x 14 paddles of 2 px (56 px of line) + 5 x 4 paddles (40 px) + 2 markers
    assert np.median(bright) > 80
    assert bright.min() > 40


def test_options_change_the_geometry():
    base, _, info = generate_pathfinder(12, seed=5, return_info=True)
    short, _, sinfo = generate_pathfinder(12, seed=5, contour_length=6, return_info=True)
    dashed, _, dinfo = generate_pathfinder(12, seed=5, paddle_gap=2.0, return_info=True)
    for images, inf in ((short, sinfo), (dashed, dinfo)):
        assert not np.array_equal(images, base)
        assert all(img[_pixel(p)] == 255 for img, m in zip(images, inf.markers) for p in m)
    # the default distractors follow contour_length: 6 // 3 = 2 paddles, 20 // 2 = 10 snakes
    assert sinfo.num_distractors.max() <= 10
    big, _ = generate_pathfinder(4, seed=5, size=64)
    assert big.shape == (4, 64, 64)


@pytest.mark.parametrize("kwargs, error", [
    (dict(n=-1), ValueError),
    (dict(n=2.0), TypeError),
    (dict(n=True), TypeError),
    (dict(seed=None), TypeError),
    (dict(seed=-3), ValueError),
    (dict(size=4), ValueError),
    (dict(contour_length=0), ValueError),
    (dict(paddle_length=0.0), ValueError),
    (dict(paddle_length="2"), TypeError),
    (dict(marker_radius=-1.0), ValueError),
    (dict(num_distractors=-1), ValueError),
    (dict(paddle_gap=-0.5), ValueError),
    (dict(continuity=float("nan")), ValueError),
    (dict(padding=20.0), ValueError),
    (dict(return_info=1), TypeError),
    (dict(seed_distance=40.0), ValueError),       # the second seed never fits in 32 px
])
def test_bad_arguments(kwargs, error):
    args = dict(n=4, seed=0) | kwargs
    n = args.pop("n")
    with pytest.raises(error) as exc:
        generate_pathfinder(n, **args)
    assert next(iter(kwargs)).split("_")[0] in str(exc.value) or "fit" in str(exc.value)


# ----------------------------------------------------------------- tokens


def test_tokens_are_pixels_in_raster_order(sample):
    images, _, _ = sample
    tokens = pathfinder_tokens(images[:5])
    assert tokens.dtype == torch.long and tokens.shape == (5, 1024)
    assert torch.equal(tokens[2], torch.from_numpy(images[2].astype(np.int64)).flatten())
    assert tokens[:, 32 * 3 + 4].tolist() == images[:5, 3, 4].tolist()
    assert int(tokens.max()) < PIXEL_VOCAB_SIZE
    assert torch.equal(pathfinder_tokens(torch.from_numpy(images[:5])), tokens)
    assert torch.equal(pathfinder_tokens(images[:5].astype(np.int32)), tokens)


def test_tokens_reject_bad_input():
    with pytest.raises(TypeError):
        pathfinder_tokens(np.zeros((2, 32, 32), dtype=np.float32))
    with pytest.raises(TypeError):
        pathfinder_tokens([[0]])
    with pytest.raises(ValueError, match="shape"):
        pathfinder_tokens(np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="255"):
        pathfinder_tokens(np.full((1, 2, 2), 256, dtype=np.int64))


# ----------------------------------------------------------------- official layout


def _fixture(tmp_path, n=6, per_dir=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    labels = rng.integers(0, 2, n)
    base = save_pathfinder_dir(images, labels, tmp_path, images_per_dir=per_dir)
    return images, labels, base


def test_save_writes_the_official_layout(tmp_path):
    images, labels, base = _fixture(tmp_path, n=6, per_dir=4)
    assert base == tmp_path / DEFAULT_DIFFICULTY
    assert sorted(p.name for p in (base / "metadata").iterdir()) == ["0.npy", "1.npy"]
    rows = (base / "metadata" / "1.npy").read_text().splitlines()
    assert rows == [f"imgs/1 sample_{i}.png {i} {labels[4 + i]}" for i in range(2)]
    # LRA's reader: fields 0 and 1 give the path, field 3 the label
    for row, j in zip(rows, (4, 5)):
        f = row.split(" ")
        assert decode_png((base / f[0] / f[1]).read_bytes())[..., 0].tolist() == images[j].tolist()
        assert int(f[3]) == labels[j]


def test_round_trip(tmp_path, sample):
    images, labels, _ = sample
    save_pathfinder_dir(images[:25], labels[:25], tmp_path, images_per_dir=2)   # 13 folders
    got, got_labels = load_pathfinder_dir(tmp_path)
    np.testing.assert_array_equal(got, images[:25])                            # 10 after 9
    np.testing.assert_array_equal(got_labels, labels[:25])
    assert got.dtype == np.uint8 and got_labels.dtype == np.int64
    head, _ = load_pathfinder_dir(tmp_path, limit=3)
    np.testing.assert_array_equal(head, images[:3])


def test_round_trip_other_difficulty_and_size(tmp_path):
    images = np.arange(3 * 16 * 16, dtype=np.int64).reshape(3, 16, 16).astype(np.uint8)
    save_pathfinder_dir(images, [0, 1, 1], tmp_path, difficulty="curv_baseline")
    got, labels = load_pathfinder_dir(tmp_path, difficulty="curv_baseline", size=16)
    np.testing.assert_array_equal(got, images)
    assert labels.tolist() == [0, 1, 1]


def test_reads_original_generator_rows_and_numpy_metadata(tmp_path):
    images, labels, base = _fixture(tmp_path, n=4, per_dir=2)
    # text rows with all 11 fields of the original generator
    full = [f"imgs/0 sample_{i}.png {i} {labels[i]} 1.0 14 4 2 0.5 1 1" for i in range(2)]
    (base / "metadata" / "0.npy").write_text("\n".join(full) + "\n")
    # a real .npy string array, as snakes2.py's numpy.save writes it
    table = np.array([["imgs/1", f"sample_{i}.png", str(i), str(labels[2 + i]), "1.0"]
                      for i in range(2)])
    with open(base / "metadata" / "1.npy", "wb") as fh:
        np.save(fh, table)
    got, got_labels = load_pathfinder_dir(tmp_path)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_empty_images_are_skipped_as_lra_does(tmp_path, caplog):
    images, labels, base = _fixture(tmp_path, n=4, per_dir=4)
    (base / "imgs" / "0" / "sample_2.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="leapformer.data.pathfinder"):
        got, got_labels = load_pathfinder_dir(tmp_path)
    np.testing.assert_array_equal(got, images[[0, 1, 3]])
    np.testing.assert_array_equal(got_labels, labels[[0, 1, 3]])
    assert "skipped 1 empty" in caplog.text
    with pytest.raises(ValueError, match=r"sample_2\.png.*0\.npy:3"):
        load_pathfinder_dir(tmp_path, skip_empty=False)


def _rewrite_row(base, line, text):
    path = base / "metadata" / "0.npy"
    rows = path.read_text().splitlines()
    rows[line - 1] = text
    path.write_text("\n".join(rows) + "\n")


MALFORMED = {
    "missing image": (lambda b: (b / "imgs/0/sample_1.png").unlink(),
                      r"sample_1\.png \(listed at .*0\.npy:2\): image file does not exist"),
    "too few fields": (lambda b: _rewrite_row(b, 2, "imgs/0 sample_1.png 1"),
                       r"0\.npy:2: expected at least 4"),
    "bad label": (lambda b: _rewrite_row(b, 3, "imgs/0 sample_2.png 2 yes"),
                  r"0\.npy:3: label .* got 'yes'"),
    "label 2": (lambda b: _rewrite_row(b, 1, "imgs/0 sample_0.png 0 2"),
                r"0\.npy:1: label"),
    "path outside": (lambda b: _rewrite_row(b, 1, "imgs/../../x sample_0.png 0 1"),
                     r"0\.npy:1: image path"),
    "not utf-8": (lambda b: (b / "metadata/0.npy").write_bytes(b"imgs/0 \xff\xfe 0 1\n"),
                  r"0\.npy:1: not UTF-8"),
    "wrong size": (lambda b: (b / "imgs/0/sample_0.png").write_bytes(
                       encode_png(np.zeros((16, 20), dtype=np.uint8))),
                   r"sample_0\.png \(listed at .*0\.npy:1\): image is 16x20"),
    "not a png": (lambda b: (b / "imgs/0/sample_3.png").write_bytes(b"GIF89a...."),
                  r"sample_3\.png \(listed at .*0\.npy:4\): unreadable PNG: not a PNG"),
    "corrupt png": (lambda b: (b / "imgs/0/sample_0.png").write_bytes(
                        (b / "imgs/0/sample_0.png").read_bytes()[:40]),
                    r"sample_0\.png .*unreadable PNG: truncated"),
    "bad npy": (lambda b: (b / "metadata/0.npy").write_bytes(b"\x93NUMPY\x01\x00garbage"),
                r"0\.npy: unreadable \.npy metadata"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_fixtures_name_the_file(tmp_path, case):
    breaker, message = MALFORMED[case]
    _, _, base = _fixture(tmp_path, n=4, per_dir=4)
    breaker(base)
    with pytest.raises(ValueError, match=message):
        load_pathfinder_dir(tmp_path)


def test_colour_image_is_rejected(tmp_path):
    _, _, base = _fixture(tmp_path, n=2, per_dir=2)
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    (base / "imgs/0/sample_1.png").write_bytes(_png(rgb, colour=2, filters=[0] * 32))
    with pytest.raises(ValueError, match=r"sample_1\.png .*colour image"):
        load_pathfinder_dir(tmp_path)


def test_missing_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere: Pathfinder folder does not exist"):
        load_pathfinder_dir(tmp_path / "nowhere")
    (tmp_path / "curv_baseline").mkdir()
    with pytest.raises(ValueError, match=r"curv_contour_length_14: no such difficulty folder "
                                         r"\(found: curv_baseline\)"):
        load_pathfinder_dir(tmp_path)
    with pytest.raises(ValueError, match=r"metadata: metadata folder does not exist"):
        load_pathfinder_dir(tmp_path, difficulty="curv_baseline")
    (tmp_path / "curv_baseline" / "metadata").mkdir()
    with pytest.raises(ValueError, match=r"metadata: no metadata files"):
        load_pathfinder_dir(tmp_path, difficulty="curv_baseline")
    (tmp_path / "curv_baseline" / "metadata" / "0.npy").write_text("\n")
    with pytest.raises(ValueError, match="lists no readable images"):
        load_pathfinder_dir(tmp_path, difficulty="curv_baseline")
    with pytest.raises(ValueError, match="difficulty"):
        load_pathfinder_dir(tmp_path, difficulty="../x")


def test_save_refuses_to_mix_with_existing_metadata(tmp_path):
    images, labels, base = _fixture(tmp_path, n=8, per_dir=2)       # metadata 0..3
    with pytest.raises(ValueError, match="overwrite=True"):
        save_pathfinder_dir(images, labels, tmp_path)
    save_pathfinder_dir(images[:3], labels[:3], tmp_path, images_per_dir=2, overwrite=True)
    assert sorted(p.name for p in (base / "metadata").iterdir()) == ["0.npy", "1.npy"]
    got, _ = load_pathfinder_dir(tmp_path)
    np.testing.assert_array_equal(got, images[:3])


@pytest.mark.parametrize("images, labels, error", [
    (np.zeros((2, 32, 32), dtype=np.float32), [0, 1], TypeError),
    (np.zeros((32, 32), dtype=np.uint8), [0], ValueError),
    (np.zeros((2, 32, 32), dtype=np.uint8), [0], ValueError),
    (np.zeros((2, 32, 32), dtype=np.uint8), [0, 2], ValueError),
    (np.zeros((2, 32, 32), dtype=np.uint8), [0.0, 1.0], TypeError),
])
def test_save_validates(tmp_path, images, labels, error):
    with pytest.raises(error):
        save_pathfinder_dir(images, labels, tmp_path)


# ----------------------------------------------------------------- PNG codec
# An independent writer: filters applied byte by byte as the PNG specification
# describes them, so the decoder is checked against every filter type.


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _png(pixels: np.ndarray, *, colour: int, filters) -> bytes:
    height, width = pixels.shape[:2]
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = pixels.reshape(height, width * bpp).astype(int).tolist()
    out = bytearray()
    for y, f in enumerate(filters):
        row, prior = raw[y], raw[y - 1] if y else [0] * (width * bpp)
        out.append(f)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][f]
            out.append((x - pred) % 256)

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    data = zlib.compress(bytes(out))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
            + chunk(b"tEXt", b"Comment\x00ancillary chunks are skipped")
            + chunk(b"IDAT", data[:7]) + chunk(b"IDAT", data[7:]) + chunk(b"IEND", b""))


@pytest.mark.parametrize("colour", [0, 2, 4, 6])
def test_png_decoder_handles_every_filter(colour):
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    rng = np.random.default_rng(colour)
    pixels = rng.integers(0, 256, (10, 7, bpp), dtype=np.uint8)
    pixels[3:6] = 250                                        # flat areas make filters matter
    filters = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]
    np.testing.assert_array_equal(decode_png(_png(pixels, colour=colour, filters=filters)), pixels)


@pytest.mark.parametrize("filter_type", [0, 2])
def test_png_encoder_round_trip(filter_type):
    image = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    data = encode_png(image, filter_type=filter_type)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    np.testing.assert_array_equal(decode_png(data)[..., 0], image)


def test_png_decoder_rejects_bad_files():
    good = encode_png(np.zeros((4, 4), dtype=np.uint8))
    flipped = bytearray(good)
    flipped[40] ^= 0xFF
    for data, message in [
        (b"", "empty"),
        (b"not a png at all", "signature"),
        (bytes(flipped), "CRC"),
        (good[:-12], "IEND"),
        (good[:30], "truncated"),
    ]:
        with pytest.raises(ValueError, match=message):
            decode_png(data)
    sixteen = bytearray(good)
    sixteen[24] = 16                                      # IHDR bit depth; fix the CRC
    sixteen[29:33] = struct.pack(">I", zlib.crc32(bytes(sixteen[12:29])))
    with pytest.raises(ValueError, match="bit depth 16"):
        decode_png(bytes(sixteen))
    with pytest.raises(TypeError):
        encode_png(np.zeros((4, 4), dtype=np.int32))
