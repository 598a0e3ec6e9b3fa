"""The one rule for every name a user gives: chains, exporters, evaluations, classes, columns.

A name ends up as a directory (``media/images/{chain}/``), a manifest entry, a Parquet
column, a MongoDB key and a FiftyOne field, so it is checked once, here, against what
all of them accept, before anything is written:

* every name: a non-empty ``str`` of at most ``MAX_NAME_BYTES`` UTF-8 bytes, without
  NUL or other control characters;
* ``kind="path"`` (chain, exporter, evaluation names; they become paths or file names)
  and ``kind="column"`` also: no ``/`` or ``\\``, no ``$``, not only dots (``.``, ``..``);
* ``kind="column"`` (metadata, metric, perturbation and saliency columns) also: no
  ``.`` (a FiftyOne embedded path), not starting with ``_``, not a vocabulary column,
  not one of FiftyOne's own fields, not ending in ``_path`` unless an exporter
  declared it (``{field}_path`` columns are saliency maps in FiftyOne);
* ``kind="label"`` (class names, which are values, e.g. ``"t-shirt/top"``): the first
  rule only.

Every failure is a ValueError naming the field, the value and the expected form.

Example:
    >>> check_name("fgsm", "chain")
    'fgsm'
    >>> check_name("..", "chain")
    Traceback (most recent call last):
    ...
    ValueError: chain: got '..'; expected a name that is not only dots (it names a directory)
"""

from __future__ import annotations

import re
from typing import Any, Literal

from armory_datasets.schema import VOCABULARY

__all__ = ["MAX_NAME_BYTES", "RESERVED_FIELDS", "check_name", "check_column_name"]

MAX_NAME_BYTES = 100
"""Longest name in UTF-8 bytes: a chain or a saliency field is one component of a media
path (255 bytes per component on common file systems), and FiftyOne names its
dataset and indexes after the evaluation name (MongoDB limits those to 255 bytes)."""

RESERVED_FIELDS = frozenset({
    "id", "filepath", "tags", "metadata", "created_at", "last_modified_at", "media_type",
    "ground_truth", "prediction", "predictions", "group",
})
"""FiftyOne field names a dynamic column may not take (its own fields and our labels)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PATH_FORBIDDEN = ("/", "\\", "$")

Kind = Literal["path", "column", "label"]


def check_name(name: Any, field: str, kind: Kind = "path") -> str:
    """Return ``name`` if it follows the rule for its kind (module docstring), else raise.

    Example:
        >>> check_name("t-shirt/top", "class_names[0]", kind="label")
        't-shirt/top'
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{field}: got {name!r}; expected a non-empty string")
    if _CONTROL.search(name):
        raise ValueError(f"{field}: got {name!r}; expected a name without NUL or other control "
                         f"characters")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ValueError(f"{field}: got a name of {size} bytes ({name[:20]!r}...); expected at "
                         f"most {MAX_NAME_BYTES} UTF-8 bytes")
    if kind == "label":
        return name
    for bad in _PATH_FORBIDDEN:
        if bad in name:
            raise ValueError(f"{field}: got {name!r}; expected a name without '/', '\\' or '$' "
                             f"(it names a path, a column or a database key)")
    if set(name) == {"."}:
        raise ValueError(f"{field}: got {name!r}; expected a name that is not only dots (it "
                         f"names a directory)")
    return name


def check_column_name(name: Any, field: str, declared: bool = False) -> str:
    """A dynamic column's name: ``check_name(kind="column")``; ``declared`` allows ``*_path``.

    Example:
        >>> check_column_name("site", "metadata['site']")
        'site'
        >>> check_column_name("target", "metadata['target']")
        Traceback (most recent call last):
        ...
        ValueError: metadata['target']: 'target' is a vocabulary column; expected another name
    """
    check_name(name, field, kind="column")
    if name in VOCABULARY:
        raise ValueError(f"{field}: {name!r} is a vocabulary column; expected another name")
    if "." in name or name.startswith("_") or name in RESERVED_FIELDS:
        raise ValueError(f"{field}: got {name!r}; expected a column name without '.', not "
                         f"starting with '_', and not one of {sorted(RESERVED_FIELDS)} "
                         f"(FiftyOne's own fields)")
    if name.endswith("_path") and not declared:
        raise ValueError(f"{field}: got {name!r}; expected a name not ending in '_path' "
                         f"({{field}}_path columns hold saliency maps)")
    return name
