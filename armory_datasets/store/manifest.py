"""``manifest.json``: what an export directory holds, checked against schemas/manifest.v{N}.json.

New exports write version 2 (it adds the objects table and run-level ``metrics``);
version 1 manifests, of older exports, still read.

Validation uses the ``jsonschema`` package (a dependency of armory_datasets); the
manifest is written atomically (tmp + ``os.replace``), as strict JSON (:func:`to_json`).

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> doc = new_manifest({"name": "demo"}, png_compress_level=1)
    >>> write_manifest(root, doc)
    >>> read_manifest(root)["status"]
    'writing'
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from armory_datasets import __version__
from armory_datasets.schema import SCHEMAS_DIR, VOCABULARY
from armory_datasets.untrusted import DamagedExportError, damaged

MANIFEST_FILE = "manifest.json"
SUPPORTED_VERSIONS = {"manifest_version": (1, 2), "table_version": (1, 2)}
"""The manifest and table versions this release reads (a new schema version adds its number)."""
MANIFEST_VERSION = 2
"""The version this release writes."""
MANIFEST_SCHEMA_FILE = SCHEMAS_DIR / f"manifest.v{MANIFEST_VERSION}.json"
OBJECTS_DIR = "objects"
IMAGES_PATTERN = "media/images/{chain}/{sample_index:08d}.png"
HEATMAPS_PATTERN = "media/heatmaps/{field}/{chain}/{sample_index:08d}-{sha256_16}.png"

_PRIMITIVE_NAMES = {
    pa.bool_(): "bool", pa.int32(): "int32", pa.int64(): "int64",
    pa.float32(): "float32", pa.float64(): "float64", pa.string(): "string",
}


def format_arrow_type(arrow_type: pa.DataType) -> str:
    """Write a type in the notation of schemas/*.json (inverse of ``schema.parse_arrow_type``).

    Example:
        >>> format_arrow_type(pa.list_(pa.struct([("label", pa.int64())])))
        'list<struct<label:int64>>'
    """
    if arrow_type in _PRIMITIVE_NAMES:
        return _PRIMITIVE_NAMES[arrow_type]
    if pa.types.is_list(arrow_type):
        return f"list<{format_arrow_type(arrow_type.value_type)}>"
    if pa.types.is_struct(arrow_type):
        fields = ",".join(f"{f.name}:{format_arrow_type(f.type)}" for f in arrow_type)
        return f"struct<{fields}>"
    raise ValueError(f"Arrow type {arrow_type} has no notation; expected bool, int32, int64, "
                     f"float32, float64, string, or lists/structs of them")


def now_iso() -> str:
    """UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    Example:
        >>> now_iso().endswith("Z")
        True
    """
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_export_id() -> str:
    """A fresh export id: UTC time plus random hex, e.g. ``20250101T120000Z-1a2b3c4d``.

    Example:
        >>> len(new_export_id())
        25
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(4)}"


def default_dataset_name(manifest: dict[str, Any]) -> str:
    """FiftyOne dataset name of an export: ``{evaluation name}-{export_id}``.

    Example:
        >>> default_dataset_name({"evaluation": {"name": "eval"}, "export_id": "X"})
        'eval-X'
    """
    return f"{manifest['evaluation']['name']}-{manifest['export_id']}"


def new_manifest(evaluation: dict[str, Any], png_compress_level: int) -> dict[str, Any]:
    """A manifest for a new export (status "writing", no exporters or parts yet).

    Example:
        >>> new_manifest({"name": "e", "author": "me"}, 1)["evaluation"]
        {'description': None, 'author': 'me', 'name': 'e'}
    """
    now = now_iso()
    return {
        "manifest_version": MANIFEST_VERSION,
        "table_version": VOCABULARY.version,
        "armory_datasets_version": __version__,
        "export_id": new_export_id(),
        "created_at": now,
        "updated_at": now,
        "status": "writing",
        "evaluation": {"description": None, "author": None, **json_ready(evaluation)},
        "exporters": [],
        "class_names": None,
        "dynamic_columns": [],
        "counts": None,
        "table": {"dir": "table", "parts": []},
        "objects": {"dir": OBJECTS_DIR, "parts": []},
        "metrics": {},
        "media": {"images": IMAGES_PATTERN, "heatmaps": HEATMAPS_PATTERN,
                  "png_compress_level": png_compress_level},
        "fiftyone": {"dataset": None, "layout": "flat", "saved_views": []},
    }


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON types (tuples become lists, numpy scalars numbers, else str).

    Example:
        >>> json_ready({"eps": (1, 2)})
        {'eps': [1, 2]}
    """
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


_NON_FINITE = "$numberDouble"  # MongoDB Extended JSON's key for a double JSON has no number for
_NON_FINITE_TEXT = {"Infinity": float("inf"), "-Infinity": float("-inf"), "NaN": float("nan")}


def to_json(doc: Any, indent: int | None = 2) -> str:
    """``doc`` as strict JSON (RFC 8259), which ``jq``, browsers and Spark read: a NaN or
    infinity (an attack's ``norm``, say) is written as MongoDB Extended JSON writes it,
    ``{"$numberDouble": "Infinity"}`` ("-Infinity", "NaN"), and :func:`from_json` reads it
    back as the float. Python's ``json`` would write the bare ``Infinity``, not JSON.

    Example:
        >>> to_json({"norm": float("inf"), "eps": 0.5}, indent=None)
        '{"norm": {"$numberDouble": "Infinity"}, "eps": 0.5}'
    """
    return strict_json(doc, indent, _extended_json)


def strict_json(value: Any, indent: int | None, non_finite: Callable[[float], Any],
                default: Callable[[Any], Any] | None = None) -> str:
    """JSON text (RFC 8259) of ``value``, each NaN or infinity in it replaced by
    ``non_finite(number)``; ``default`` as ``json.dumps``'s.

    Example:
        >>> strict_json([1.5, float("nan")], None, lambda number: None)
        '[1.5, null]'
    """
    try:
        return json.dumps(value, indent=indent, default=default, allow_nan=False)
    except ValueError:  # a float out of JSON's range somewhere: only then walk the value
        return json.dumps(_replace_non_finite(value, non_finite), indent=indent, default=default,
                          allow_nan=False)


def _replace_non_finite(value: Any, non_finite: Callable[[float], Any]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite(value)
    if isinstance(value, dict):
        return {key: _replace_non_finite(item, non_finite) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_non_finite(item, non_finite) for item in value]
    return value


def _extended_json(number: float) -> dict[str, str]:
    return {_NON_FINITE: "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")}


def from_json(text: str | bytes) -> Any:
    """The document :func:`to_json` wrote (older manifests' bare ``Infinity`` and ``NaN`` too).

    Example:
        >>> from_json('{"norm": {"$numberDouble": "-Infinity"}}')
        {'norm': -inf}
    """
    return json.loads(text, object_hook=_decode_non_finite)


def _decode_non_finite(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and obj.get(_NON_FINITE) in _NON_FINITE_TEXT:
        return _NON_FINITE_TEXT[obj[_NON_FINITE]]
    return obj


@cache
def _validator(version: int = MANIFEST_VERSION) -> Any:
    import jsonschema

    schema = json.loads((SCHEMAS_DIR / f"manifest.v{version}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def is_part_name(name: str) -> bool:
    """Whether ``name`` is a table (or objects) part's name as the manifest schema allows it.

    Example:
        >>> is_part_name("part-00001.parquet"), is_part_name("part-w0-00001.parquet")
        (True, True)
        >>> is_part_name("../part-00001.parquet")
        False
    """
    pattern = _validator(MANIFEST_VERSION).schema["properties"]["table"]["properties"]["parts"]["items"]["pattern"]
    return re.fullmatch(pattern, name) is not None


def validate_manifest(doc: dict[str, Any]) -> None:
    """Raise ValueError naming the first place where ``doc`` breaks the manifest schema of its
    ``manifest_version`` (the current one when it has none).

    Example:
        >>> validate_manifest({"status": "done"})
        Traceback (most recent call last):
        ...
        ValueError: manifest: 'manifest_version' is a required property (at <root>)
    """
    version = doc.get("manifest_version") if isinstance(doc, dict) else None
    validator = _validator(version if version in SUPPORTED_VERSIONS["manifest_version"] else MANIFEST_VERSION)
    if validator.is_valid(doc):  # a third faster than collecting (no) errors: every write checks
        return
    error = min(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path])  # not valid: one at least
    where = "/".join(str(p) for p in error.path) or "<root>"
    raise ValueError(f"manifest: {error.message} (at {where})")


class UnsupportedVersionError(DamagedExportError):
    """A manifest or table of a version this release does not read (newer, or unknown).

    Example:
        >>> check_versions({"manifest_version": 1, "table_version": 7}, Path("/e/manifest.json"))
        Traceback (most recent call last):
        ...
        armory_datasets.store.manifest.UnsupportedVersionError: /e/manifest.json: table_version 7 is not supported; this release reads table_version 1, 2 (upgrade armory_datasets to read newer exports)
    """


def check_versions(doc: Any, path: Path) -> None:
    """Refuse a manifest whose ``manifest_version`` or ``table_version`` is not supported.

    Example:
        >>> check_versions({"manifest_version": 1, "table_version": 1}, Path("manifest.json"))
    """
    if not isinstance(doc, dict):
        return  # not an object: the schema check names it
    for key, supported in SUPPORTED_VERSIONS.items():
        found = doc.get(key)
        if key in doc and found not in supported:
            raise UnsupportedVersionError(
                f"{path}: {key} {found!r} is not supported; this release reads {key} "
                f"{', '.join(map(str, supported))} (upgrade armory_datasets to read newer "
                f"exports)", path)


def export_directory(path: str | Path) -> Path:
    """``path`` resolved, when it is a directory; FileNotFoundError when nothing is there,
    NotADirectoryError for a file (the manifest itself, say: its directory is named).

    Example:
        >>> export_directory("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent: no such directory; expected an export directory (manifest.json, table/, media/)
    """
    resolved = Path(path).resolve()
    expected = f"expected an export directory ({MANIFEST_FILE}, table/, media/)"
    if resolved.is_file():
        is_manifest = resolved.name == MANIFEST_FILE
        parent = f" (the export is its directory, {resolved.parent})" if is_manifest else ""
        raise NotADirectoryError(f"{path}: a file{parent}; {expected}")
    if not resolved.is_dir():
        raise FileNotFoundError(f"{path}: no such directory; {expected}")
    return resolved


def read_manifest(export_dir: Path) -> dict[str, Any] | None:
    """The validated manifest of an export directory, or None if it has none.

    An unreadable, truncated or invalid manifest raises :class:`DamagedExportError`
    naming the file; an unknown version :class:`UnsupportedVersionError`.

    Example:
        >>> read_manifest(Path("/nonexistent")) is None
        True
    """
    path = Path(export_dir) / MANIFEST_FILE
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():
        raise damaged(path, "not a regular file (a symlink or folder); expected the export's "
                      "JSON manifest", Path(export_dir))
    try:
        doc = from_json(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise damaged(path, f"not a readable JSON manifest ({error})", Path(export_dir)) from None
    check_versions(doc, path)
    try:
        validate_manifest(doc)
    except ValueError as error:
        raise damaged(path, error, Path(export_dir)) from None
    return doc


def write_manifest(export_dir: Path, doc: dict[str, Any]) -> None:
    """Validate ``doc``, stamp ``updated_at`` and write it atomically.

    Example:
        >>> import tempfile
        >>> write_manifest(Path(tempfile.mkdtemp()), new_manifest({"name": "e"}, 1))
    """
    doc["updated_at"] = now_iso()
    validate_manifest(doc)
    path = Path(export_dir) / MANIFEST_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(to_json(doc) + "\n")
    os.replace(tmp, path)
