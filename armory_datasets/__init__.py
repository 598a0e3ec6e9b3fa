"""Export selected samples of classifier/detector evaluations to FiftyOne and Parquet.

Nothing heavy is imported here; ``open_export`` loads ``armory_datasets.reading``
(and ``pack_export``/``unpack_export`` ``armory_datasets.sharing``) on first use.

>>> import armory_datasets
>>> armory_datasets.__version__
'0.1.0'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from armory_datasets.reading import open_export
    from armory_datasets.sharing import pack_export, unpack_export

__version__ = "0.1.0"
__all__ = ["__version__", "open_export", "pack_export", "unpack_export"]


def __getattr__(name: str) -> Any:
    """Import ``open_export`` (and the sharing functions) lazily: ``armory_datasets.open_export(path)``."""
    if name == "open_export":
        from armory_datasets.reading import open_export

        return open_export
    if name in ("pack_export", "unpack_export"):
        from armory_datasets import sharing

        return getattr(sharing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
