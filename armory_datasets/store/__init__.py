"""Writing an export directory: Parquet table, media, manifest, FiftyOne dataset.

Importing this package does not import fiftyone; only building the dataset does.

Example:
    >>> from armory_datasets.store import ExportWriter
    >>> with ExportWriter("exports/run1", {"name": "demo"}, fiftyone=False) as writer:
    ...     writer.export_dir.name
    'run1'
"""

from __future__ import annotations

from armory_datasets.store.fiftyone_import import BY_SAMPLE_VIEW, build_fiftyone_dataset
from armory_datasets.store.manifest import MANIFEST_FILE, read_manifest, validate_manifest
from armory_datasets.store.parquet_writer import part_paths, unified_schema
from armory_datasets.store.writer import ExportWriter

__all__ = [
    "BY_SAMPLE_VIEW",
    "MANIFEST_FILE",
    "ExportWriter",
    "build_fiftyone_dataset",
    "part_paths",
    "read_manifest",
    "unified_schema",
    "validate_manifest",
]
