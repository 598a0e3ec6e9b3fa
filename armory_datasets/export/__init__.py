"""Exporters (upstream's ``armory.export`` API): classification, detection, saliency.

Submodules load on first use, so ``import armory_datasets.export`` stays light and
``armory_datasets.export.captum`` (torch, captum) is imported only when touched.

Example:
    >>> import armory_datasets.export as export
    >>> export.image_classification.ImageClassificationExporter().name
    'image_classification'
"""

from __future__ import annotations

import importlib
from typing import Any

from armory_datasets.export.base import Exporter
from armory_datasets.export.image_classification import ImageClassificationExporter
from armory_datasets.export.object_detection import ObjectDetectionExporter

__all__ = ["Exporter", "ImageClassificationExporter", "ObjectDetectionExporter"]

_SUBMODULES = ("base", "criteria", "image_classification", "object_detection", "captum",
               "xaitksaliency", "drise")


def __getattr__(name: str) -> Any:
    """Import a submodule on attribute access: ``armory_datasets.export.captum``."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
