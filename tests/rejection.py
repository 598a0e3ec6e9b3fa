"""Shared check of the exporter tests: a bad batch is refused and nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from armory_datasets.store import ExportWriter


def assert_rejected(exporter: Any, batch: Any, export_dir: Path, match: str) -> None:
    """ValueError naming the field, and nothing written: no record, no file."""
    with ExportWriter(export_dir, {"name": "rejected"}, fiftyone=False) as writer:
        exporter.setup(writer=writer)
        with pytest.raises(ValueError, match=match):
            exporter.export(0, batch)
        writer.end_batch()
    assert writer.manifest["counts"]["records"] == 0
    assert not (export_dir / "media").exists()
