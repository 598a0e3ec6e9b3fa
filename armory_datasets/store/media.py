"""Media files of an export directory: lossless PNG images and 16-bit PNG heatmaps.

A heatmap is a 16-bit grayscale PNG, the format the FiftyOne App draws (it decodes
16-bit PNGs itself; the browser's decoder refuses float TIFFs). Its pixels ``q`` hold
the map linearly, ``value = low + q / 65535 * (high - low)``, with ``low``/``high``
the map's min and max, kept in the PNG's ``armory_datasets:range`` text chunk (and
the table's ``{field}_min``/``{field}_max``); values come back within ``(high - low)
/ 131070`` (under 1e-5 of the range). The file name ends in a hash of the file's
bytes, so a rewritten map never reuses a name the browser may have cached. Exports
written before hold float32 TIFFs; ``read_heatmap`` reads both.

A new file is created under its final name with ``O_EXCL`` (never through a link found
there) and written; a name that exists is replaced atomically, through ``{path}.{pid}.tmp``
and ``os.replace``. The rename cost about a fifth of a small image's file time, and a
half-written file under its final name is never read: the export flushes the media
before it finishes the table part that names them, and a resumed export writes again
every record of an unfinished part, replacing its file.

Example:
    >>> import numpy as np, tempfile
    >>> root = tempfile.mkdtemp()
    >>> rel = image_relpath("benign", 7)
    >>> rel
    'media/images/benign/00000007.png'
    >>> write_png(Path(root) / rel, np.zeros((4, 5, 3), np.uint8))
    >>> heat = np.array([[-1.0, 0.5], [2.0, 0.25]])
    >>> path = write_heatmap(Path(root), "captum", "benign", 7, heat)
    >>> path.startswith("media/heatmaps/captum/benign/00000007-") and path.endswith(".png")
    True
    >>> bool(np.abs(read_heatmap(Path(root) / path) - heat).max() < 1e-4)
    True
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from armory_datasets.store.png import encode_png

IMAGES_DIR = "media/images"
HEATMAPS_DIR = "media/heatmaps"
TMP_SUFFIX = ".tmp"
DEFAULT_PNG_COMPRESS_LEVEL = 1
"""Deflate level for PNGs (:func:`~armory_datasets.store.png.encode_png`): 1 is ISA-L's fast
level. Any level is lossless; zlib's higher ones cost several times more for files about 5%
smaller."""

HEATMAP_LEVELS = 65535
"""Largest pixel value of a heatmap PNG: the map's max (its min is 0)."""
HEATMAP_RANGE_KEY = "armory_datasets:range"
"""PNG text chunk holding a heatmap's ``low high`` values (Python float reprs)."""
_DIGEST_CHARS = 16

_CHANNELS = (1, 3, 4)


def image_relpath(chain: str, sample_index: int) -> str:
    """Relative path of a record's image inside the export directory.

    Example:
        >>> image_relpath("fgsm", 12)
        'media/images/fgsm/00000012.png'
    """
    return f"{IMAGES_DIR}/{chain}/{sample_index:08d}.png"


def heatmap_relpath(field: str, chain: str, sample_index: int, content: bytes) -> str:
    """Relative path of a record's heatmap PNG, named after a hash of its bytes.

    Example:
        >>> heatmap_relpath("captum", "benign", 3, b"png bytes")
        'media/heatmaps/captum/benign/00000003-d013614dc14a37ee.png'
    """
    return f"{HEATMAPS_DIR}/{field}/{chain}/{sample_index:08d}-{_digest(content)}.png"


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:_DIGEST_CHARS]


def write_png(path: str | Path, image_hwc: np.ndarray, compress_level: int = DEFAULT_PNG_COMPRESS_LEVEL) -> None:
    """Write an (H, W, C) uint8 image (C in 1, 3, 4) as a lossless PNG, atomically.

    Example:
        >>> import tempfile
        >>> write_png(Path(tempfile.mkdtemp()) / "a.png", np.full((2, 2, 1), 9, np.uint8))
    """
    if image_hwc.dtype != np.uint8 or image_hwc.ndim != 3 or image_hwc.shape[2] not in _CHANNELS:
        raise ValueError(f"image: got {image_hwc.dtype} array of shape {image_hwc.shape}; "
                         f"expected (H, W, C) uint8 with C in 1, 3, 4")
    _write_new(path, encode_png(image_hwc, compress_level))


def encode_heatmap(heatmap: np.ndarray) -> bytes:
    """The 16-bit grayscale PNG of a finite 2-D map (deterministic bytes).

    Example:
        >>> encode_heatmap(np.zeros((2, 3)))[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
    """
    array = np.asarray(heatmap)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise ValueError(f"heatmap: got {array.dtype} array of shape {array.shape}; "
                         f"expected a 2-D numeric (H, W) map of finite values")
    values = array.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scale = HEATMAP_LEVELS / (high - low) if high > low else 0.0
    levels = np.rint((values - low) * scale).astype(np.uint16)
    return encode_png(levels, DEFAULT_PNG_COMPRESS_LEVEL, text={HEATMAP_RANGE_KEY: f"{low!r} {high!r}"})


def write_heatmap(root: Path, field: str, chain: str, sample_index: int, heatmap: np.ndarray) -> str:
    """Write a record's heatmap PNG under ``root`` atomically; return its relative path.

    Example:
        >>> import tempfile
        >>> write_heatmap(Path(tempfile.mkdtemp()), "ig", "benign", 0, np.zeros((3, 3)))[:34]
        'media/heatmaps/ig/benign/00000000-'
    """
    content = encode_heatmap(heatmap)
    relpath = heatmap_relpath(field, chain, sample_index, content)
    _write_new(Path(root) / relpath, content)
    return relpath


def read_heatmap(path: Path) -> np.ndarray:
    """A heatmap's float32 values: a 16-bit PNG of this module, or an older export's float32 TIFF.

    Raises ValueError naming the file when it is neither (a reader treats the directory
    as untrusted input).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> read_heatmap(root / write_heatmap(root, "ig", "benign", 0, np.eye(2))).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    path = Path(path)
    if path.suffix in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path), dtype=np.float32)
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(HEATMAP_RANGE_KEY)
            levels = np.asarray(image)
    except (OSError, SyntaxError) as error:  # PIL's errors for a foreign or damaged file
        raise ValueError(f"{path}: not a readable heatmap PNG ({error})") from error
    try:
        low, high = (float(v) for v in text.split())
    except (AttributeError, ValueError):
        low = high = None
    if low is None or levels.dtype != np.uint16 or levels.ndim != 2:
        raise ValueError(f"{path}: expected a 16-bit grayscale heatmap PNG with a "
                         f"{HEATMAP_RANGE_KEY!r} text chunk 'low high'")
    return (low + levels.astype(np.float64) * ((high - low) / HEATMAP_LEVELS)).astype(np.float32)


def legacy_heatmap_cache(export_id: str) -> Path:
    """Where PNGs of a read-only older export's TIFF maps go: ``~/.cache/armory_datasets``
    (``$XDG_CACHE_HOME``), one folder per export id (a hash of it when not a plain name).

    Example:
        >>> legacy_heatmap_cache("ab12").name
        'ab12'
    """
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "armory_datasets"
    safe = isinstance(export_id, str) and export_id.replace("-", "").replace("_", "").isalnum()
    return base / (export_id if safe else hashlib.sha256(str(export_id).encode()).hexdigest()[:16])


def legacy_heatmap_png(root: Path, relpath: str, cache: Path) -> Path:
    """The 16-bit PNG of an older export's float32 TIFF map ``root/relpath``, written once beside
    it as ``{name}-{hash}.png``, or under ``cache`` when ``root`` is read-only.

    Example:
        >>> import tempfile, tifffile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "m").mkdir(); tifffile.imwrite(root / "m/00000001.tif", np.eye(2, dtype=np.float32))
        >>> png = legacy_heatmap_png(root, "m/00000001.tif", root / "cache")
        >>> png.parent == root / "m", read_heatmap(png).tolist()
        (True, [[1.0, 0.0], [0.0, 1.0]])
    """
    try:
        content = encode_heatmap(read_heatmap(root / relpath))
    except Exception as error:  # tifffile raises several types for damaged files
        raise ValueError(f"{relpath}: not a readable float32 TIFF heatmap ({error})") from error
    name = f"{relpath.rsplit('.', 1)[0]}-{_digest(content)}.png"
    for base in (root, cache):
        path = base / name
        if path.is_file() and path.read_bytes() == content:
            return path
        try:
            _write_atomic(path, content)
            return path
        except PermissionError:
            continue
    raise PermissionError(f"{relpath}: cannot write its PNG beside it nor under {cache}")


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC
_CREATE_OR_TRUNCATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _CLOEXEC


def _write_new(path: str | Path, content: bytes) -> None:
    """Create ``path`` and write ``content``; if the name exists (a file, or a link someone
    left there), replace it atomically instead."""
    path = os.fspath(path)
    try:
        file = _create(path, _CREATE_NEW)
    except FileExistsError:
        _write_atomic(path, content)
        return
    with open(file, "wb") as stream:
        stream.write(content)


def _write_atomic(path: str | Path, content: bytes) -> None:
    """Write ``{path}.{pid}.tmp`` (writers sharing a directory never share one), then rename
    it to ``path``."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}{TMP_SUFFIX}"
    with open(_create(tmp, _CREATE_OR_TRUNCATE), "wb") as stream:
        stream.write(content)
    os.replace(tmp, path)


def _create(path: str, flags: int) -> int:
    """``os.open(path, flags)``, making the folder only when it is missing (a stat per file saved)."""
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, 0o666)


def remove_tmp_files(root: Path) -> int:
    """Delete files a killed export left half-written under ``root``; return how many.

    Example:
        >>> import tempfile
        >>> remove_tmp_files(Path(tempfile.mkdtemp()))
        0
    """
    removed = 0
    for tmp in root.rglob(f"*{TMP_SUFFIX}") if root.exists() else ():
        tmp.unlink()
        removed += 1
    return removed
