"""The media writer of an export: each record's PNG once, and saliency heatmaps.

It writes through :mod:`armory_datasets.store.media` (atomic files) and calls
``prepare()`` before its first file, so the directory is created (or a replaced
export cleared) only when something is really written.

Example:
    >>> import numpy as np, tempfile
    >>> from pathlib import Path
    >>> m = MediaWriter(Path(tempfile.mkdtemp()), prepare=lambda: None)
    >>> m.write_images("benign", np.array([3]), np.zeros((1, 2, 2, 3), np.uint8))["image_path"].to_pylist()
    ['media/images/benign/00000003.png']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from armory_datasets.store import media

__all__ = ["MediaWriter"]


class MediaWriter:
    """Writes images (once per (chain, sample) and batch) and heatmaps under ``export_dir``."""

    def __init__(self, export_dir: Path, prepare: Callable[[], None],
                 png_compress_level: int = media.DEFAULT_PNG_COMPRESS_LEVEL) -> None:
        self.export_dir = export_dir
        self.prepare = prepare
        self.png_compress_level = png_compress_level
        self._imaged: set[tuple[str, int]] = set()

    def write_images(self, chain: str, indices: np.ndarray, images: np.ndarray) -> dict[str, pa.Array]:
        """Write the PNGs not written yet in this batch; return image_path, width, height."""
        paths = [media.image_relpath(chain, i) for i in indices.tolist()]
        for relpath, index, image in zip(paths, indices.tolist(), images):
            if (chain, index) not in self._imaged:
                self.prepare()
                media.write_png(f"{self.export_dir}/{relpath}", image, self.png_compress_level)
                self._imaged.add((chain, index))
        n = len(indices)
        return {
            "image_path": pa.array(paths, pa.string()),
            "width": pa.array(np.full(n, images.shape[2], dtype=np.int32)),
            "height": pa.array(np.full(n, images.shape[1], dtype=np.int32)),
        }

    def write_heatmap(self, field: str, chain: str, sample_index: int, heatmap: np.ndarray) -> str:
        """Write a 16-bit PNG heatmap (``media.write_heatmap``); return its path relative to the export."""
        self.prepare()
        return media.write_heatmap(self.export_dir, field, chain, int(sample_index), heatmap)

    def end_batch(self) -> None:
        """Forget which images this batch wrote (each batch holds a sample once per chain)."""
        self._imaged.clear()
