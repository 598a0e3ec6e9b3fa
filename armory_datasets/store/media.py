"""Media files of an export directory: lossless PNG images and float32 TIFF heatmaps.

Every file is written to ``{path}.tmp`` and renamed into place (``os.replace``), so a
reader or a resumed export never sees a half-written file under its final name.

Example:
    >>> import numpy as np, tempfile
    >>> root = tempfile.mkdtemp()
    >>> rel = image_relpath("benign", 7)
    >>> rel
    'media/images/benign/00000007.png'
    >>> write_png(Path(root) / rel, np.zeros((4, 5, 3), np.uint8))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGES_DIR = "media/images"
HEATMAPS_DIR = "media/heatmaps"
TMP_SUFFIX = ".tmp"
DEFAULT_PNG_COMPRESS_LEVEL = 1
"""zlib level for PNGs. Any level is lossless; 1 encodes about 3x faster than PIL's
default 6 on photographs, for files about 10% larger (see benchmarks/export_bench.py)."""

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def image_relpath(chain: str, sample_index: int) -> str:
    """Relative path of a record's image inside the export directory.

    Example:
        >>> image_relpath("fgsm", 12)
        'media/images/fgsm/00000012.png'
    """
    return f"{IMAGES_DIR}/{chain}/{sample_index:08d}.png"


def heatmap_relpath(field: str, chain: str, sample_index: int) -> str:
    """Relative path of a record's float32 TIFF heatmap for a saliency field.

    Example:
        >>> heatmap_relpath("captum", "benign", 3)
        'media/heatmaps/captum/benign/00000003.tif'
    """
    return f"{HEATMAPS_DIR}/{field}/{chain}/{sample_index:08d}.tif"


def write_png(path: Path, image_hwc: np.ndarray, compress_level: int = DEFAULT_PNG_COMPRESS_LEVEL) -> None:
    """Write an (H, W, C) uint8 image (C in 1, 3, 4) as a lossless PNG, atomically.

    Example:
        >>> import tempfile
        >>> write_png(Path(tempfile.mkdtemp()) / "a.png", np.full((2, 2, 1), 9, np.uint8))
    """
    from PIL import Image

    if image_hwc.dtype != np.uint8 or image_hwc.ndim != 3 or image_hwc.shape[2] not in _MODES:
        raise ValueError(f"image: got {image_hwc.dtype} array of shape {image_hwc.shape}; "
                         f"expected (H, W, C) uint8 with C in 1, 3, 4")
    channels = image_hwc.shape[2]
    pixels = image_hwc[:, :, 0] if channels == 1 else image_hwc
    tmp = _tmp_path(path)
    Image.fromarray(np.ascontiguousarray(pixels), mode=_MODES[channels]).save(
        tmp, format="PNG", compress_level=compress_level
    )
    os.replace(tmp, path)


def write_heatmap(path: Path, heatmap: np.ndarray) -> None:
    """Write a 2-D saliency map as a float32 TIFF (readable by ``fo.Heatmap``), atomically.

    Example:
        >>> import tempfile
        >>> write_heatmap(Path(tempfile.mkdtemp()) / "h.tif", np.zeros((3, 3)))
    """
    import tifffile

    array = np.asarray(heatmap)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"heatmap: got {array.dtype} array of shape {array.shape}; "
                         f"expected a 2-D numeric (H, W) map")
    tmp = _tmp_path(path)
    tifffile.imwrite(tmp, array.astype(np.float32))
    os.replace(tmp, path)


def _tmp_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + TMP_SUFFIX)


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
