"""The one vocabulary of column names, loaded from ``schemas/table.v2.json``.

Version 2 adds the COCO match of every box (``match``, ``iou``, ``matched_index``) and
the ``tp``/``fp``/``fn`` counts; ``schemas/table.v1.json`` stays for reading v1 exports.

Criteria field names, Parquet columns and FiftyOne fields all come from here.

Example:
    >>> from armory_datasets.schema import VOCABULARY
    >>> VOCABULARY["confidence"].fiftyone_field
    'prediction.confidence'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa

# A checkout (or editable install) reads the top-level schemas/ folder; a built wheel
# carries the same files as armory_datasets/schemas (pyproject's package-dir).
_CHECKOUT_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
SCHEMAS_DIR = (_CHECKOUT_SCHEMAS if _CHECKOUT_SCHEMAS.is_dir()
               else Path(__file__).resolve().parent / "schemas")
TABLE_SCHEMA_FILE = SCHEMAS_DIR / "table.v2.json"

_PRIMITIVES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
}


def parse_arrow_type(text: str) -> pa.DataType:
    """Parse the schema file's type notation.

    Example:
        >>> parse_arrow_type("list<struct<label:int64,score:float64>>")
        ListType(list<item: struct<label: int64, score: double>>)
    """
    text = text.replace(" ", "")
    if text in _PRIMITIVES:
        return _PRIMITIVES[text]
    match = re.fullmatch(r"(list|struct)<(.*)>", text)
    if not match:
        raise ValueError(f"arrow_type: unknown type {text!r}; expected one of "
                         f"{sorted(_PRIMITIVES)}, list<...> or struct<name:type,...>")
    kind, inner = match.groups()
    if kind == "list":
        return pa.list_(parse_arrow_type(inner))
    return pa.struct([_parse_struct_field(part) for part in _split_top_level(inner)])


def _parse_struct_field(text: str) -> pa.Field:
    name, _, type_text = text.partition(":")
    if not name or not type_text:
        raise ValueError(f"arrow_type: struct field {text!r} must read name:type")
    return pa.field(name, parse_arrow_type(type_text))


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


@dataclass(frozen=True)
class Column:
    """One column of the export table and its FiftyOne field."""

    name: str
    arrow_type: pa.DataType
    nullable: bool
    fiftyone_field: str
    kind: str
    description: str

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type, nullable=self.nullable)


@dataclass(frozen=True)
class Vocabulary:
    """The versioned table vocabulary; unknown names are dynamic columns."""

    version: int
    columns: dict[str, Column]

    def __getitem__(self, name: str) -> Column:
        return self.columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def fiftyone_path(self, name: str) -> str:
        """FiftyOne field path of a column (dynamic columns keep their name)."""
        column = self.columns.get(name)
        return column.fiftyone_field if column else name

    def is_nullable(self, name: str) -> bool:
        """Whether a column may hold nulls (dynamic columns may)."""
        column = self.columns.get(name)
        return column.nullable if column else True

    def object_columns(self) -> tuple[str, ...]:
        """Columns holding a list of boxes (``list<struct<...>>``), in schema order.

        Example:
            >>> VOCABULARY.object_columns()
            ('ground_truth_objects', 'predicted_objects')
        """
        return tuple(name for name, c in self.columns.items()
                     if pa.types.is_list(c.arrow_type) and pa.types.is_struct(c.arrow_type.value_type))

    def object_fields(self, column: str) -> dict[str, pa.DataType]:
        """The box fields of an object column and their Arrow types.

        Example:
            >>> list(VOCABULARY.object_fields("predicted_objects"))[:3]
            ['label', 'x_min', 'y_min']
        """
        struct = self.columns[column].arrow_type.value_type
        return {f.name: f.type for f in struct}

    def arrow_schema(self, kinds: tuple[str, ...] | None = None) -> pa.Schema:
        """Arrow schema of the listed columns, optionally only some kinds."""
        return pa.schema(
            [c.field for c in self.columns.values() if kinds is None or c.kind in kinds]
        )


@cache
def load_vocabulary(path: Path = TABLE_SCHEMA_FILE) -> Vocabulary:
    """Load and check the vocabulary document.

    Example:
        >>> load_vocabulary().version
        2
    """
    doc = json.loads(Path(path).read_text())
    columns: dict[str, Column] = {}
    for entry in doc["columns"]:
        name = entry["name"]
        if name in columns:
            raise ValueError(f"{path}: column {name!r} is listed twice")
        columns[name] = Column(
            name=name,
            arrow_type=parse_arrow_type(entry["arrow_type"]),
            nullable=bool(entry["nullable"]),
            fiftyone_field=entry["fiftyone_field"],
            kind=entry["kind"],
            description=entry["description"],
        )
    return Vocabulary(version=int(doc["version"]), columns=columns)


VOCABULARY = load_vocabulary()
KEY_COLUMNS = tuple(c.name for c in VOCABULARY.columns.values() if c.kind == "key")
