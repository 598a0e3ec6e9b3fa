"""A Hugging Face dataset card, so ``datasets.load_dataset(EXPORT_DIR)`` reads images with labels.

Without a card, ``load_dataset`` on a directory guesses an ``imagefolder`` of every
image file, heatmaps included, with the chain folder as the label. The card written at
close (``README.md``) declares ``media/images/**`` as the image folder, and
``media/images/metadata.parquet`` gives each image (``file_name``, relative to it) its
record's ``chain``, ``sample_index`` and labels: ``target``/``prediction`` typed
``ClassLabel`` through the file's ``huggingface`` schema metadata, or the detection
boxes. (HF picks one builder per directory, so the table itself is read with
``load_dataset("parquet", data_files="EXPORT_DIR/table/*.parquet")``.)

No ``datasets`` import is needed to write it (the feature JSON is written by hand; it
is the stable ``ClassLabel`` form), and everything is read locally, offline.

Example:
    >>> import json, pyarrow.parquet as pq
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> path = tiny_export()
    >>> (path / CARD_FILE).read_text().splitlines()[:3]
    ['---', 'configs:', '- config_name: default']
    >>> meta = pq.read_schema(path / METADATA_FILE)
    >>> json.loads(meta.metadata[b"huggingface"])["info"]["features"]["target"]["names"]
    ['cat', 'dog', 'bird']
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from armory_datasets.store.footers import parquet_file
from armory_datasets.store.parquet_writer import parquet_options, part_paths

__all__ = ["CARD_FILE", "METADATA_FILE", "hf_label_metadata", "write_dataset_card"]

CARD_FILE = "README.md"
METADATA_FILE = "media/images/metadata.parquet"
LABEL_COLUMNS = ("chain", "sample_index", "target", "prediction", "confidence", "correct",
                 "ground_truth_objects", "predicted_objects")

_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: "media/images/**"
---
# {name}

{description}

An [armory_datasets](https://github.com/twosixlabs/armory-library) export: one record
per (chain, sample) of the evaluation, {records} records. `manifest.json` describes it.

```python
import datasets
images = datasets.load_dataset({folder})  # images with chain, sample_index, labels
table = datasets.load_dataset("parquet", data_files={folder} + "/table/*.parquet")
```
"""


def hf_label_metadata(class_names: list[str] | None) -> dict[bytes, bytes]:
    """Parquet schema metadata typing ``target``/``prediction`` as HF ``ClassLabel``
    (empty without class names); the table parts carry it too.

    Example:
        >>> hf_label_metadata(None), list(hf_label_metadata(["cat"]))
        ({}, [b'huggingface'])
    """
    if not class_names:
        return {}
    label = {"names": list(class_names), "_type": "ClassLabel"}
    return {b"huggingface": json.dumps(
        {"info": {"features": {"target": label, "prediction": label}}}).encode()}


def write_dataset_card(export_dir: str | Path, manifest: dict[str, Any],
                       parts: list[Path] | None = None) -> None:
    """Write ``README.md`` and ``media/images/metadata.parquet`` for the finished table
    (its parts, or those listed).

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> from armory_datasets.store.manifest import read_manifest
        >>> path = tiny_export()
        >>> write_dataset_card(path, read_manifest(path))
        >>> pq.read_table(path / METADATA_FILE).column("file_name")[0].as_py()
        'benign/00000000.png'
    """
    export_dir = Path(export_dir)
    parts = part_paths(export_dir / "table") if parts is None else parts
    images = export_dir / "media" / "images"
    if not parts or not images.is_dir():
        return
    # Part by part: a dataset scan costs more per part than these columns in a small export.
    tables = []
    for part in parts:
        file = parquet_file(part)
        names = file.schema_arrow.names  # converted from the footer on each access: once per part
        tables.append(file.read(columns=[c for c in ("image_path", *LABEL_COLUMNS) if c in names]))
    table = pa.concat_tables(tables, promote_options="default")
    names = [c for c in LABEL_COLUMNS  # the task's label columns (the others are all null)
             if c in table.column_names and table.column(c).null_count < table.num_rows]
    prefix = "media/images/"
    paths = table.column("image_path")
    file_names = pc.if_else(pc.starts_with(paths, prefix), pc.utf8_slice_codeunits(paths, len(prefix)),
                            pa.scalar(None, pa.string()))
    metadata = table.select(names).add_column(0, "file_name", file_names)
    metadata = metadata.filter(pc.is_valid(metadata.column("file_name")))
    metadata = metadata.replace_schema_metadata(hf_label_metadata(manifest.get("class_names")))
    _write_atomic(export_dir / METADATA_FILE, lambda tmp: pq.write_table(
        metadata, tmp, **parquet_options(metadata.schema)))
    evaluation = manifest.get("evaluation", {})
    card = _CARD.format(name=evaluation.get("name") or export_dir.name,
                        description=evaluation.get("description") or "",
                        records=table.num_rows, folder=json.dumps(export_dir.name))
    _write_atomic(export_dir / CARD_FILE, lambda tmp: Path(tmp).write_text(card))


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(str(tmp))
    os.replace(tmp, path)
