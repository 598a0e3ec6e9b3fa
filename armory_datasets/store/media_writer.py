"""The media writer of an export: each record's PNG once, and saliency heatmaps.

It writes through :mod:`armory_datasets.store.media` (atomic files) and calls
``prepare()`` before its first file, so the directory is created (or a replaced
export cleared) only when something is really written. A batch's images are encoded
and written in a background thread while the caller goes on with the next batch (zlib
and the file system release the GIL, so on a second core this hides most of their
cost); :meth:`MediaWriter.flush` waits for them, and the export calls it before a
Parquet part naming them is finished, so a part never names a file not yet written.

Example:
    >>> import numpy as np, tempfile
    >>> from pathlib import Path
    >>> m = MediaWriter(Path(tempfile.mkdtemp()), prepare=lambda: None)
    >>> m.write_images("benign", np.array([3]), np.zeros((1, 2, 2, 3), np.uint8))["image_path"].to_pylist()
    ['media/images/benign/00000003.png']
    >>> m.flush(); (m.export_dir / "media/images/benign/00000003.png").is_file()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pyarrow as pa

from armory_datasets.store import media
from armory_datasets.store.threads import background

__all__ = ["MediaWriter"]


class MediaWriter:
    """Writes images (once per (chain, sample) and batch) and heatmaps under ``export_dir``."""

    def __init__(self, export_dir: Path, prepare: Callable[[], None],
                 png_compress_level: int = media.DEFAULT_PNG_COMPRESS_LEVEL) -> None:
        self.export_dir = export_dir
        self.prepare = prepare
        self.png_compress_level = png_compress_level
        self._imaged: set[tuple[str, int]] = set()
        self._writing: Future[None] | None = None
        self._failure: BaseException | None = None  # raised again by every later flush

    def write_images(self, chain: str, indices: np.ndarray, images: np.ndarray) -> dict[str, pa.Array]:
        """Start writing the PNGs not written yet in this batch (after the previous
        batch's, whose error, if any, is raised here); return image_path, width, height."""
        keys = indices.tolist()
        paths = [media.image_relpath(chain, i) for i in keys]
        todo = [position for position, index in enumerate(keys) if (chain, index) not in self._imaged]
        if todo:
            self.prepare()
            self.flush()
            self._imaged.update((chain, index) for index in keys)
            # A copy: the caller may reuse its array while the thread encodes this one.
            pixels = images[todo]
            files = [f"{self.export_dir}/{paths[position]}" for position in todo]
            self._writing = background("media").submit(self._write_pngs, files, pixels)
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

    def flush(self) -> None:
        """Wait until every image started is written; raise the error of one that failed
        (again on every later call: the rows naming it must not reach a finished part)."""
        writing, self._writing = self._writing, None
        if writing is not None and self._failure is None:
            self._failure = writing.exception()
        if self._failure is not None:
            raise self._failure

    def end_batch(self) -> None:
        """Forget which images this batch wrote (each batch holds a sample once per chain)."""
        self._imaged.clear()

    def _write_pngs(self, paths: list[str], pixels: np.ndarray) -> None:
        for path, image in zip(paths, pixels):
            media.write_png(path, image, self.png_compress_level)
