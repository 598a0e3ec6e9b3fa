"""PNG encoding of export media: one fixed row filter and Intel ISA-L's deflate.

Written by hand (about 30 lines over ``isal``) because no library here encodes PNGs
this way: Pillow and libpng (OpenCV) try several filters on every row and search
zlib matches, which is most of an export's cost per sample. Every row here gets the
"Up" filter (a vectorised numpy subtraction) and the stream is deflated by ISA-L
(``isal.isal_zlib``, a zlib stream) at its level 1: on scikit-learn's sample photographs
it encodes 6-10x faster than Pillow at ``compress_level=1``, files of the same size
(``benchmarks/export_bench.py``); its deflate is 3.5-4.6x faster than zlib's ``Z_RLE``,
which this encoder used before. The output is a standard PNG (8-bit gray, RGB,
RGBA, or 16-bit gray with text chunks) that Pillow, browsers and the FiftyOne App
decode; the same pixels always give the same bytes.

Example:
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> pixels = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    >>> np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(pixels)))), pixels)
    True
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from isal import isal_zlib

__all__ = ["check_compress_level", "encode_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP_FILTER = 2
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: gray, RGB, RGBA


def encode_png(pixels: np.ndarray, compress_level: int = 1, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of ``(H, W)`` or ``(H, W, C)`` pixels: uint8 with C in 1, 3, 4, or uint16 gray.

    ``compress_level`` (0..9): 1, the default, is ISA-L's fast level; 0 (stored) and 2-9
    are zlib's, 9 the smallest files and several times slower. ``text`` becomes ``tEXt``
    chunks (Latin-1 keys and values).

    Example:
        >>> encode_png(np.zeros((1, 1), np.uint16), text={"k": "v"})[:8] == SIGNATURE
        True
    """
    check_compress_level(compress_level)
    array = pixels[:, :, None] if pixels.ndim == 2 else pixels
    depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(array.dtype)
    if (array.ndim != 3 or depth is None or array.shape[2] not in _COLOR_TYPES
            or (depth == 16 and array.shape[2] != 1) or 0 in array.shape[:2]):
        raise ValueError(f"pixels: got {pixels.dtype} array of shape {pixels.shape}; expected a "
                         f"non-empty (H, W, C) uint8 image with C in 1, 3, 4, or (H, W) uint16")
    height, width, channels = array.shape
    rows = np.ascontiguousarray(array, array.dtype.newbyteorder(">")).view(np.uint8).reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = _UP_FILTER
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # wraps modulo 256, as PNG's filter does
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOR_TYPES[channels], 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    chunks += [_chunk(b"tEXt", f"{key}\0{value}".encode("latin-1")) for key, value in (text or {}).items()]
    chunks += [_chunk(b"IDAT", _deflate(filtered.data, compress_level)), _chunk(b"IEND", b"")]
    return SIGNATURE + b"".join(chunks)


def check_compress_level(level: object, field: str = "compress_level") -> None:
    """Raise ValueError naming ``field`` unless ``level`` is an int in 0..9.

    Example:
        >>> check_compress_level(12, "png_compress_level")
        Traceback (most recent call last):
        ...
        ValueError: png_compress_level: got 12; expected an int in 0..9 (0 stores, 1 fast, 9 smallest)
    """
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= 9:
        raise ValueError(f"{field}: got {level!r}; expected an int in 0..9 (0 stores, 1 fast, 9 smallest)")


def _deflate(data: memoryview, level: int) -> bytes:
    """The zlib stream of ``data`` at ``level``: ISA-L's for 1, zlib's for the others."""
    if level == 1:
        return isal_zlib.compress(data, 1)
    return zlib.compress(data, level)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
