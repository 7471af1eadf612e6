"""Minimal PNG codec for 8-bit images, with numpy and zlib only (no Pillow).

Enough for the Long-Range Arena Pathfinder files (8-bit greyscale PNGs) and for
writing fixtures and exports in the same format:

- :func:`decode_png` reads non-interlaced PNGs of bit depth 8 in colour types
  0 (grey), 2 (RGB), 4 (grey + alpha) and 6 (RGBA), with any of the five row
  filters, several ``IDAT`` chunks and ancillary chunks (skipped); every chunk's
  CRC is checked. It returns ``uint8 [height, width, channels]``.
- :func:`encode_png` writes an 8-bit greyscale image (colour type 0), every row
  with filter 0 ("None") or 2 ("Up"), then zlib.

Anything else (palettes, other bit depths, Adam7 interlacing, truncated or
corrupt data) raises ``ValueError`` with the reason; callers add the file name.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (8-bit only)
_MAX_SIDE = 1 << 16                   # refuse absurd headers before allocating


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png(image: np.ndarray, *, filter_type: int = 2, level: int = 6) -> bytes:
    """PNG bytes of a greyscale ``uint8 [height, width]`` image.

    ``filter_type``: 0 (None) or 2 (Up, usually smaller) for every row;
    ``level``: zlib compression level 0-9.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if image.ndim != 2 or 0 in image.shape:
        raise ValueError("image must be a non-empty [height, width] array, "
                         f"got shape {list(image.shape)}")
    if filter_type not in (0, 2):
        raise ValueError(f"filter_type must be 0 or 2, got {filter_type!r}")
    height, width = image.shape
    rows = image.astype(np.uint8, copy=True)
    if filter_type == 2:
        rows[1:] = image[1:] - image[:-1]          # uint8 arithmetic wraps modulo 256
    raw = np.empty((height, width + 1), dtype=np.uint8)
    raw[:, 0] = filter_type
    raw[:, 1:] = rows
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))


def _unfilter(raw: bytes, height: int, width: int, bpp: int) -> np.ndarray:
    stride = width * bpp
    if len(raw) != height * (stride + 1):
        raise ValueError(f"image data holds {len(raw)} bytes after decompression, "
                         f"expected {height * (stride + 1)} for {width}x{height}")
    data = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    filters = data[:, 0]
    bad = np.flatnonzero(filters > 4)
    if bad.size:
        raise ValueError(f"row {int(bad[0])} has unknown filter type {int(filters[bad[0]])}")
    out = np.empty((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        f = filters[y]
        line = data[y, 1:]
        if f == 0:
            cur = line
        elif f == 1:    # Sub: running sum along the row, per channel, modulo 256
            cur = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(stride)
        elif f == 2:    # Up
            cur = line + prior
        else:           # Average / Paeth depend on the reconstructed left neighbour
            cur = np.empty(stride, dtype=np.uint8)
            row, up = line.tolist(), prior.tolist()
            res = [0] * stride
            if f == 3:
                for i in range(stride):
                    left = res[i - bpp] if i >= bpp else 0
                    res[i] = (row[i] + ((left + up[i]) >> 1)) & 0xFF
            else:
                for i in range(stride):
                    if i >= bpp:
                        a, c = res[i - bpp], up[i - bpp]
                    else:
                        a = c = 0
                    b = up[i]
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                    res[i] = (row[i] + pred) & 0xFF
            cur[:] = res
        out[y] = cur
        prior = out[y]
    return out


def decode_png(data: bytes) -> np.ndarray:
    """Pixels of an 8-bit PNG as ``uint8 [height, width, channels]`` (see the module
    docstring for what is supported). Raises ``ValueError`` naming the problem."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise ValueError("empty file (0 bytes)")
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    pos = len(SIGNATURE)
    header = None
    idat: list[bytes] = []
    ended = False
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError(f"truncated chunk header at byte {pos}")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"truncated {kind!r} chunk at byte {pos}")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:end])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"CRC mismatch in {kind!r} chunk at byte {pos} (corrupt file)")
        if header is None and kind != b"IHDR":
            raise ValueError(f"first chunk is {kind!r}, expected b'IHDR'")
        if kind == b"IHDR":
            if length != 13:
                raise ValueError(f"IHDR chunk has {length} bytes, expected 13")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            ended = True
            break
        elif kind == b"PLTE":
            raise ValueError("palette PNGs (colour type 3) are not supported")
        elif not kind[0:1].islower():
            raise ValueError(f"unknown critical chunk {kind!r}")
        pos = end
    if header is None:
        raise ValueError("no IHDR chunk")
    if not ended:
        raise ValueError("no IEND chunk (truncated file)")
    width, height, depth, colour, compression, filtering, interlace = header
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise ValueError(f"implausible size {width}x{height}")
    if depth != 8 or colour not in _CHANNELS:
        raise ValueError(f"unsupported PNG: bit depth {depth}, colour type {colour} "
                         "(only 8-bit grey, grey+alpha, RGB and RGBA)")
    if compression != 0 or filtering != 0:
        raise ValueError(f"unknown compression/filter method {compression}/{filtering}")
    if interlace != 0:
        raise ValueError("interlaced (Adam7) PNGs are not supported")
    if not idat:
        raise ValueError("no IDAT chunk")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as err:
        raise ValueError(f"corrupt image data: {err}") from None
    bpp = _CHANNELS[colour]
    return _unfilter(raw, height, width, bpp).reshape(height, width, bpp)
