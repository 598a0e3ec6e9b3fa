"""A list-of-boxes column, flattened: one numpy array per box field and each box's record.

Both export-time (numpy) evaluation and the pyarrow backend read object criteria through
it: Arrow's ``list_flatten`` and ``list_parent_indices`` do the flattening, and
``reduce`` counts the boxes that satisfy a predicate per record.

Example:
    >>> flat = flatten_boxes([[{"label": 1, "score": 0.9}], None, []], "predicted_objects", 3)
    >>> flat.parents.tolist(), flat.valid.tolist(), flat.fields["score"].tolist()
    ([0], [True, False, True], [0.9])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from armory_datasets.schema import VOCABULARY


@dataclass(frozen=True)
class FlatBoxes:
    """``valid`` (N,): the record has a list; ``lengths`` (N,): its boxes; ``parents``
    (K,): each box's record; ``fields``: (K,) per box field (numbers as float64 with NaN
    for null, strings as objects with None)."""

    valid: np.ndarray
    lengths: np.ndarray
    parents: np.ndarray
    fields: dict[str, np.ndarray]

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Boxes per record (N,) where ``mask`` (K,) is true."""
        return np.bincount(self.parents[np.asarray(mask, dtype=bool)],
                           minlength=len(self.valid)).astype(np.int64)


def box_list_array(value: Any, column: str, size: int) -> pa.Array:
    """The column as an Arrow ``list<struct>`` array of ``size`` records (accepts Arrow
    arrays, Python lists of box dicts and ``Objects``; a scalar null is a null list)."""
    box_type = VOCABULARY[column].arrow_type
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Array):
        array = value
    elif not isinstance(value, (list, tuple, np.ndarray)):
        if not _missing(value):
            raise ValueError(f"{column}: {value!r}; expected a list of boxes per record")
        array = pa.nulls(size, box_type)
    else:
        items = [None if _missing(item) else _box_dicts(item, column) for item in value]
        try:
            array = pa.array(items, type=box_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
            raise ValueError(f"{column}: {error}; expected a list of boxes ({box_type}) "
                             "per record") from None
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)) or not (
            pa.types.is_struct(array.type.value_type)):
        raise ValueError(f"{column}: holds {array.type}; expected a list of boxes "
                         f"({box_type})")
    if len(array) != size:
        raise ValueError(f"{column}: {len(array)} records for a batch of {size}")
    return array


def _missing(item: Any) -> bool:
    return item is None or (isinstance(item, (float, np.floating)) and bool(np.isnan(item)))


def _box_dicts(item: Any, column: str) -> list[dict[str, Any]]:
    boxes = getattr(item, "boxes", None)
    if boxes is None:
        if not isinstance(item, (list, tuple, np.ndarray)):
            raise ValueError(f"{column}: {item!r}; expected a list of boxes per record")
        return list(item)
    scores = item.scores
    return [{"label": int(label), "x_min": float(b[0]), "y_min": float(b[1]),
             "x_max": float(b[2]), "y_max": float(b[3]),
             "score": None if scores is None else float(scores[k])}
            for k, (b, label) in enumerate(zip(boxes, item.labels))]


def flatten_boxes(value: Any, column: str, size: int) -> FlatBoxes:
    """Flatten a list-of-boxes column of ``size`` records (see ``FlatBoxes``)."""
    array = box_list_array(value, column, size)
    flat = pc.list_flatten(array)
    parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)
    fields = {}
    for struct_field, child in zip(flat.type, flat.flatten()):
        if pa.types.is_string(child.type) or pa.types.is_large_string(child.type):
            fields[struct_field.name] = child.to_numpy(zero_copy_only=False)
        else:
            fields[struct_field.name] = pc.cast(child, pa.float64()).to_numpy(zero_copy_only=False)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return FlatBoxes(valid, lengths.astype(np.int64), parents, fields)
