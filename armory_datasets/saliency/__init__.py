"""Pure computation of saliency maps (no file I/O): float32 numpy maps aligned with the 0..1 image.

- `CaptumSaliency` (captum_maps): gradient attributions of a classifier, (N, H, W) per call.
- `XaitkSaliency` (xaitk_maps): xaitk black-box maps of a classifier, (N, len(classes), H, W).
- `DRise`, `box_saliency_stats` (drise): D-RISE maps of a detector's detections, (K, H, W).

Names are imported lazily, so ``import armory_datasets.saliency.drise`` does not import
captum or xaitk.

Example:
    >>> from armory_datasets.saliency import DRise
    >>> DRise(num_masks=10).num_masks
    10
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AttributionMaps": "captum_maps",
    "NormalizedModel": "captum_maps",
    "CaptumSaliency": "captum_maps",
    "ProbabilityBlackbox": "xaitk_maps",
    "XaitkSaliency": "xaitk_maps",
    "DRise": "drise",
    "box_saliency_stats": "drise",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
