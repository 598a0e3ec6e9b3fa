"""``finalize_export(dir)``: turn a directory whose table is written into a complete export.

It gives every table part the full schema, counts the records, derives the objects
table (``objects/``, one row per box), writes the Hugging Face
dataset card (``README.md``), builds the FiftyOne
dataset named in the manifest (when it names one) and only then marks the manifest
"complete". It reads everything from the directory, so it also finishes an export
whose writer process is gone.

Example:
    >>> finalize_export("exports/run1")["status"]  # doctest: +SKIP
    'complete'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from armory_datasets.schema import VOCABULARY
from armory_datasets.store.hf_card import write_dataset_card
from armory_datasets.store.manifest import format_arrow_type, read_manifest, write_manifest
from armory_datasets.store.parquet_writer import conform_parts, count_records, part_paths, unified_schema

__all__ = ["TABLE_DIR", "finalize_export"]

TABLE_DIR = "table"


def finalize_export(export_dir: str | Path,
                    old_export: dict[str, Any] | None = None) -> tuple[dict[str, Any], str | None]:
    """Conform parts, count, build FiftyOne, mark complete; return the manifest and the
    FiftyOne dataset's name (None without FiftyOne; a copy's own name when another
    directory owns the manifest's).

    ``old_export``: the manifest of an export this one replaced (its datasets are deleted
    after the build, never another copy's).
    """
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    if manifest is None:
        raise FileNotFoundError(f"{export_dir}: no manifest.json; expected an export directory")
    table_dir = export_dir / TABLE_DIR
    conform_parts(table_dir)
    schema = unified_schema(table_dir)
    manifest["table"]["parts"] = [p.name for p in part_paths(table_dir)]
    manifest["dynamic_columns"] = [
        {"name": f.name, "arrow_type": format_arrow_type(f.type)}
        for f in schema or [] if f.name not in VOCABULARY
    ]
    manifest["counts"] = count_records(table_dir)
    if manifest["manifest_version"] >= 2:
        from armory_datasets.store.objects_table import write_objects

        manifest["objects"]["parts"] = write_objects(export_dir, part_paths(table_dir),
                                                     manifest["class_names"])
    write_dataset_card(export_dir, manifest)
    write_manifest(export_dir, manifest)
    dataset_name = None
    if manifest["fiftyone"]["dataset"]:
        from armory_datasets.store.fiftyone_import import delete_owned_datasets, export_fiftyone_dataset

        dataset = export_fiftyone_dataset(export_dir, rebuild=True)
        dataset_name = dataset.name
        manifest["fiftyone"]["saved_views"] = list(dataset.list_saved_views())
        if old_export is not None and old_export["fiftyone"]["dataset"]:
            delete_owned_datasets(export_dir, old_export)
    manifest["status"] = "complete"
    write_manifest(export_dir, manifest)
    return manifest, dataset_name
