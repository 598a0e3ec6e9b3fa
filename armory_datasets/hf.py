"""Hugging Face ``datasets`` view of an export: ``to_hf(export, where)`` -> ``datasets.Dataset``.

Every table column is kept, typed from its Arrow type, plus:

- ``image``: an ``Image`` feature (the record's PNG, decoded to PIL on access);
- ``target``/``prediction`` (classification) as ``ClassLabel`` with the manifest's class
  names (``"0"``, ``"1"``, ... without them); detection boxes keep their struct with
  ``label`` a ``ClassLabel``;
- one column per saliency field (``captum_ig``, ``drise_gt_0``, ...): the float32 map as
  an ``Array2D`` (nested lists when maps differ in size), null where a record has none.

Needs the ``[hf]`` extra.

Example:
    >>> from armory_datasets import open_export
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> data = to_hf(open_export(tiny_export()), where="~correct")
    >>> data.features["target"].names, data[0]["image"].size, data[0]["target"]
    (['cat', 'dog', 'bird'], (8, 8), 1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from armory_datasets.extras import require
from armory_datasets.store.media import read_heatmap  # 16-bit PNG maps, and older float TIFFs

if TYPE_CHECKING:
    from armory_datasets.reading import Export, Where

__all__ = ["features", "heatmap_fields", "read_heatmap", "to_hf"]

CLASS_COLUMNS = ("target", "prediction")
OBJECT_COLUMNS = ("ground_truth_objects", "predicted_objects")


def heatmap_fields(schema: pa.Schema) -> list[str]:
    """Saliency fields of a table: ``{field}_path`` beside ``_min``/``_max``, outside the vocabulary.

    Example:
        >>> heatmap_fields(pa.schema([("image_path", pa.string()), ("captum_ig_path", pa.string()),
        ...                           ("captum_ig_min", pa.float64()), ("captum_ig_max", pa.float64())]))
        ['captum_ig']
    """
    from armory_datasets.schema import VOCABULARY
    from armory_datasets.untrusted import heatmap_fields as fields

    return fields(schema.names, VOCABULARY)


def features(schema: pa.Schema, class_names: list[str], map_shapes: dict[str, Any]) -> Any:
    """HF ``Features`` of a table with ``image`` and map columns (module docstring).

    Example:
        >>> schema = pa.schema([("target", pa.int64()), ("image_path", pa.string())])
        >>> features(schema, ["cat", "dog"], {})["target"]
        ClassLabel(names=['cat', 'dog'])
    """
    require("datasets", extra="hf", feature="Hugging Face conversion")
    import datasets

    out = datasets.Features.from_arrow_schema(schema)
    labels = datasets.ClassLabel(names=class_names)
    for name in CLASS_COLUMNS:
        if name in out:
            out[name] = labels
    for name in OBJECT_COLUMNS:
        if name in out:
            inner = dict(out[name].feature)  # a List of the box struct
            inner["label"] = labels
            out[name] = datasets.List(inner)
    if "image_path" in out:
        out["image"] = datasets.Image()
    for field, shape in map_shapes.items():
        out[field] = datasets.Array2D(shape, "float32") if shape is not None else \
            datasets.List(datasets.List(datasets.Value("float32")))
    return out


def to_hf(export: Export, where: Where = None, heatmaps: bool = True) -> Any:
    """The records matching ``where`` as a ``datasets.Dataset`` (module docstring).

    Example:
        >>> from armory_datasets import open_export
        >>> from armory_datasets.demo.tiny import tiny_detection_export
        >>> data = to_hf(open_export(tiny_detection_export()), where="chains(['benign'])")
        >>> data.features["ground_truth_objects"].feature["label"].names
        ['cat', 'dog', 'bird']
        >>> [box["label"] for box in data[1]["ground_truth_objects"]]
        [0, 1]
    """
    require("datasets", extra="hf", feature="Hugging Face conversion")
    import datasets

    from armory_datasets.convert import class_names
    from armory_datasets.untrusted import inside_export

    table = export.table(where)
    root = export.path
    columns = {name: column.combine_chunks()  # arrays: HF cannot cast zero chunks
               for name, column in zip(table.column_names, table.columns)}
    keys = table.column("record_key").to_pylist() if "record_key" in columns else [None] * table.num_rows
    if "image_path" in columns:
        columns["image"] = pa.array(
            [str(inside_export(root, p, f"record {k!r} image_path", "media/images/"))
             for k, p in zip(keys, table.column("image_path").to_pylist())], pa.string())
    map_shapes: dict[str, Any] = {}
    for field in heatmap_fields(table.schema) if heatmaps else []:
        maps = [None if path is None else read_heatmap(
                    inside_export(root, path, f"record {k!r} {field}_path", f"media/heatmaps/{field}/"))
                for k, path in zip(keys, columns[f"{field}_path"].to_pylist())]
        shapes = {m.shape for m in maps if m is not None}
        map_shapes[field] = shapes.pop() if len(shapes) == 1 else None
        columns[field] = pa.array([None if m is None else m.tolist() for m in maps],
                                  pa.list_(pa.list_(pa.float32())))
    wanted = features(table.schema, class_names(export), map_shapes)
    typed = datasets.table.cast_table_to_features(pa.table(columns), wanted)
    return datasets.Dataset(datasets.table.InMemoryTable(typed),
                            info=datasets.DatasetInfo(features=wanted))
