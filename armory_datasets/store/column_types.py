"""Column typing: every value of a record becomes an Arrow array of the column's one type.

Vocabulary columns have the type of ``schemas/table.v1.json``; a dynamic column
(metadata, metrics, perturbation and saliency fields) gets the type of its first
non-null values, widened to 64-bit numbers, and keeps it for the whole export.
:meth:`ColumnTypes.typed` converts without learning, so a batch rejected halfway
teaches the export nothing; :meth:`ColumnTypes.learn` commits what a batch added.

Values a record cannot store are refused here, naming the column and the sample:
mixed types (``[1, "one", 2.5]``), objects pyarrow cannot convert, and records
larger than a MongoDB document allows (``MAX_RECORD_BYTES``).

Example:
    >>> types = ColumnTypes()
    >>> array, new = types.typed("site", ["lab", "field"], 2)
    >>> array.type, new
    (DataType(string), DataType(string))
    >>> types.typed("site", [1, "one", 2.5], 3)
    Traceback (most recent call last):
    ...
    ValueError: column 'site': sample 1 is str, sample 0 int; expected values of one type
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from armory_datasets.records.names import check_column_name
from armory_datasets.schema import VOCABULARY
from armory_datasets.store.manifest import format_arrow_type

__all__ = ["MAX_RECORD_BYTES", "ColumnTypes", "arrow_array", "check_record_size"]

MAX_RECORD_BYTES = 8 * 1024 * 1024
"""Upper bound of one record's estimated size: a FiftyOne sample is one MongoDB document
(16 MiB at most, with BSON's per-field and per-list-element overhead), so half of it."""


class ColumnTypes:
    """The Arrow type of every column of one export (vocabulary plus learned dynamic ones).

    Example:
        >>> ColumnTypes().types["target"]
        DataType(int64)
    """

    def __init__(self, dynamic: Mapping[str, pa.DataType] | None = None) -> None:
        self.types: dict[str, pa.DataType] = {c.name: c.arrow_type for c in VOCABULARY.columns.values()}
        self.dynamic: dict[str, pa.DataType] = {}
        self.declared: set[str] = set()
        for name, arrow_type in (dynamic or {}).items():
            self.dynamic[name] = self.types[name] = arrow_type
            self.declared.add(name)

    def declare(self, column: str, arrow_type: pa.DataType) -> None:
        """An exporter's dynamic column, with its type, before any batch.

        Example:
            >>> t = ColumnTypes(); t.declare("captum_ig_path", pa.string()); t.types["captum_ig_path"]
            DataType(string)
        """
        known = self.types.get(column)
        if known is not None and not known.equals(arrow_type):
            raise ValueError(f"column {column!r}: declared as {arrow_type}; it is {known} in "
                             f"this export")
        if column not in VOCABULARY:
            check_column_name(column, f"column {column!r}", declared=True)
            format_arrow_type(arrow_type)  # a type the manifest can name
            self.dynamic[column] = self.types[column] = arrow_type
            self.declared.add(column)

    def typed(self, column: str, values: Any, n: int) -> tuple[pa.Array | None, pa.DataType | None]:
        """``values`` as an array of ``n`` of the column's type, and the type it would learn.

        Returns ``(None, None)`` for an all-null column not typed yet (it starts when a
        value arrives).

        Example:
            >>> ColumnTypes().typed("target", np.array([1, 2]), 2)[0].to_pylist()
            [1, 2]
        """
        arrow_type = self.types.get(column)
        if arrow_type is None:  # exporters may add {field}_path columns (D-RISE: one per box)
            check_column_name(column, f"column {column!r}", declared=True)
        try:
            array = arrow_array(values, arrow_type)
        except OverflowError:
            raise ValueError(f"column {column!r}: an integer outside int64; expected integers "
                             f"from -2**63 to 2**63 - 1 (or floats)") from None
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise ValueError(_conversion_error(column, values, arrow_type, error)) from None
        if len(array) != n:
            raise ValueError(f"column {column!r}: got {len(array)} values; expected {n} (one per record)")
        if arrow_type is not None:
            return array, None
        if pa.types.is_null(array.type):
            return None, None
        learned = normalise_type(array.type, column)
        return array.cast(learned), learned

    def learn(self, learned: Mapping[str, pa.DataType]) -> None:
        """Commit the types a batch's new dynamic columns brought.

        Example:
            >>> t = ColumnTypes(); t.learn({"site": pa.string()}); t.dynamic
            {'site': DataType(string)}
        """
        for column, arrow_type in learned.items():
            self.dynamic[column] = self.types[column] = arrow_type


def _conversion_error(column: str, values: Any, arrow_type: pa.DataType | None, error: Exception) -> str:
    """Name the first sample whose Python type differs from the first one's, when types mix."""
    items = list(values) if isinstance(values, (list, tuple, np.ndarray)) else []
    kinds = [type(_plain(v)) for v in items if v is not None]
    if arrow_type is None and len(set(kinds)) > 1:
        present = [i for i, v in enumerate(items) if v is not None]
        first = type(_plain(items[present[0]]))
        odd = next(i for i in present if type(_plain(items[i])) is not first)
        return (f"column {column!r}: sample {odd} is {type(_plain(items[odd])).__name__}, sample "
                f"{present[0]} {first.__name__}; expected values of one type")
    expected = format_arrow_type(arrow_type) if arrow_type is not None else (
        "one kind: bools, integers, floats, strings, or lists/dicts of them")
    return f"column {column!r}: {error}; expected values of type {expected}"


def arrow_array(values: Any, arrow_type: pa.DataType | None) -> pa.Array:
    """pyarrow's conversion, with fast paths for numpy arrays (a 2-D array is a list column).

    Example:
        >>> arrow_array(np.eye(2, dtype=np.float32), None).type
        ListType(list<item: float>)
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if arrow_type is None or values.type.equals(arrow_type) else values.cast(arrow_type)
    if isinstance(values, np.ndarray) and values.dtype != object:
        if values.dtype.kind in "US":
            values = values.tolist()  # pyarrow reads numpy strings only via lists
        elif values.ndim == 1:
            return pa.array(values, type=arrow_type, from_pandas=True)  # NaN -> null
        elif values.ndim == 2 and values.shape[1] and (arrow_type is None or pa.types.is_list(arrow_type)):
            flat = pa.array(values.reshape(-1), type=None if arrow_type is None else arrow_type.value_type)
            offsets = np.arange(0, values.size + 1, values.shape[1], dtype=np.int32)
            return pa.ListArray.from_arrays(pa.array(offsets), flat)
    try:
        return pa.array(values if isinstance(values, (list, tuple)) else list(values), type=arrow_type)
    except (pa.ArrowException, TypeError, ValueError):
        return pa.array([_plain(v) for v in values], type=arrow_type)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values pyarrow converts without surprises."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def normalise_type(arrow_type: pa.DataType, column: str) -> pa.DataType:
    """The type a dynamic column gets: 64-bit ints and floats, so batches agree.

    Example:
        >>> normalise_type(pa.list_(pa.int8()), "x")
        ListType(list<item: int64>)
    """
    t = arrow_type
    if pa.types.is_boolean(t) or pa.types.is_string(t):
        return t
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(normalise_type(t.value_type, column))
    if pa.types.is_struct(t):
        if not t.num_fields:
            raise ValueError(f"column {column!r}: empty dicts only; expected dicts with at least "
                             f"one key (Parquet cannot store a struct without fields)")
        for f in t:
            check_column_name(f.name, f"column {column!r} key {f.name!r}", declared=True)
        return pa.struct([pa.field(f.name, normalise_type(f.type, column)) for f in t])
    if pa.types.is_null(t):
        raise ValueError(f"column {column!r}: lists or dicts holding only None; expected at least "
                         f"one value inside, to give the column its type")
    raise ValueError(f"column {column!r}: values of Arrow type {t}; expected bools, integers, "
                     f"floats, strings, or lists/dicts of them")


def check_record_size(columns: Mapping[str, pa.Array], n: int, where: str = "record") -> None:
    """Refuse rows whose estimated document size exceeds ``MAX_RECORD_BYTES``.

    The estimate is an upper bound over BSON: values' bytes, plus 8 bytes per list
    element and the key per field.

    Example:
        >>> check_record_size({"note": pa.array(["x" * 10])}, 1)
    """
    # Every row's estimate is at most the rows' sum, and the sum bounds cheaply from the
    # arrays' sizes: most batches are checked without a pass over their rows.
    if sum(_total_bytes(array) + (len(name) + 8) * n for name, array in columns.items()) <= MAX_RECORD_BYTES:
        return
    total = np.zeros(n, dtype=np.int64)
    for name, array in columns.items():
        total += _row_bytes(array) + len(name) + 8
    if n and total.max() > MAX_RECORD_BYTES:
        i = int(np.argmax(total))
        big = max(columns, key=lambda c: int(np.broadcast_to(_row_bytes(columns[c]), n)[i]))
        raise ValueError(f"{where} at position {i}: about {int(total[i]) >> 20} MiB (column {big!r} "
                         f"the largest); expected at most {MAX_RECORD_BYTES >> 20} MiB per record, "
                         f"which a FiftyOne sample (one MongoDB document) can hold")


def _bytes_like(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) \
        or pa.types.is_large_binary(t)


def _total_bytes(array: pa.Array) -> int:
    """At least the sum of :func:`_row_bytes` over ``array``'s rows, from its sizes alone
    (a slice may count its parent's values: an over-estimate, which only costs the exact pass)."""
    t, n = array.type, len(array)
    if _bytes_like(t):
        return array.get_total_buffer_size() + 8 * n
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _total_bytes(array.values) + 8 * len(array.values) + 8 * n
    if pa.types.is_struct(t):
        return 8 * n + sum(_total_bytes(array.field(k)) + (len(f.name) + 2) * n for k, f in enumerate(t))
    return 8 * n


def _row_bytes(array: pa.Array) -> np.ndarray | int:
    """Estimated bytes of each row of ``array``; an int when every row has the same (the
    common case of fixed-width columns, checked once per batch)."""
    t = array.type
    if _bytes_like(t):
        large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
        offsets = np.frombuffer(array.buffers()[1], np.int64 if large else np.int32)
        lengths = np.diff(offsets[array.offset:array.offset + len(array) + 1]).astype(np.int64)
        if array.null_count:  # a null may span bytes in the data buffer; it stores none
            lengths[array.is_null().to_numpy(zero_copy_only=False)] = 0
        return lengths + 8
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        child = np.broadcast_to(_row_bytes(array.values) + 8, len(array.values))
        sums = np.concatenate([[0], np.cumsum(child)])
        offsets = array.offsets.to_numpy()
        return sums[offsets[1:]] - sums[offsets[:-1]] + 8
    if pa.types.is_struct(t):
        rows: np.ndarray | int = 8
        for k, f in enumerate(t):
            rows = rows + _row_bytes(array.field(k)) + len(f.name) + 2
        return rows
    return 8
