"""``finalize_export(dir)``: turn a directory whose table is written into a complete export.

It gives every table part the full schema, counts the records, derives the objects
table (``objects/``, one row per box), writes the Hugging Face dataset card
(``README.md``) and, in a thread beside those (the build is mostly database round
trips), builds the FiftyOne dataset named in the manifest (when it names one); only
then it marks the manifest "complete". It reads everything from the directory, so it
also finishes an export whose writer process is gone.

Example:
    >>> finalize_export("exports/run1")["status"]  # doctest: +SKIP
    'complete'
"""

from __future__ import annotations

from contextlib import ExitStack
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from armory_datasets.schema import VOCABULARY
from armory_datasets.store.footers import shared_footers
from armory_datasets.store.hf_card import write_dataset_card
from armory_datasets.store.manifest import format_arrow_type, read_manifest, write_manifest
from armory_datasets.store.parquet_writer import conform_parts, count_records, part_paths, unified_schema
from armory_datasets.store.threads import background

if TYPE_CHECKING:
    from armory_datasets.store.fiftyone_dataset import SampleCollection

__all__ = ["TABLE_DIR", "finalize_export"]

TABLE_DIR = "table"


def finalize_export(export_dir: str | Path, old_export: dict[str, Any] | None = None,
                    manifest: dict[str, Any] | None = None,
                    collection: SampleCollection | None = None) -> tuple[dict[str, Any], str | None]:
    """Conform parts, count, build FiftyOne, mark complete; return the manifest and the
    FiftyOne dataset's name (None without FiftyOne; a copy's own name when another
    directory owns the manifest's).

    ``old_export``: the manifest of an export this one replaced (its datasets are deleted
    after the build, never another copy's); ``manifest``: the directory's, when its
    writer holds it (else it is read); ``collection``: the dataset's sample collection,
    when the caller started it (``fiftyone_import.export_collection``). The manifest is
    written once, complete: an export whose build fails keeps the manifest its writer
    left, and resumes.
    """
    export_dir = Path(export_dir)
    manifest = manifest if manifest is not None else read_manifest(export_dir)
    if manifest is None:
        raise FileNotFoundError(f"{export_dir}: no manifest.json; expected an export directory")
    table_dir = export_dir / TABLE_DIR
    with ExitStack() as stack:
        stack.enter_context(shared_footers())  # the part's readers here and in the build parse its footer once
        if manifest["fiftyone"]["dataset"] and collection is None:  # made while the directory is finished
            from armory_datasets.store.fiftyone_import import export_collection

            collection = stack.enter_context(export_collection())
        parts = part_paths(table_dir)  # listed, and their schemas unified, once
        schema = unified_schema(table_dir, parts)
        conform_parts(table_dir, schema, parts)
        manifest["table"]["parts"] = [p.name for p in parts]
        build = None
        if collection is not None:  # beside the rest of the directory: mostly database round trips
            from armory_datasets.store.fiftyone_import import fiftyone_dataset_name

            build = background("fiftyone-build").submit(
                fiftyone_dataset_name, export_dir, rebuild=True, manifest=deepcopy(manifest),
                collection=collection)
        try:
            _finish_directory(export_dir, manifest, parts, schema)
        except BaseException:
            if build is not None:
                build.exception()  # waited for; the directory's error is the one to show
            raise
        dataset_name = build.result() if build is not None else None
    if dataset_name is not None:
        from armory_datasets.store.fiftyone_import import BY_SAMPLE_VIEW, delete_owned_datasets

        manifest["fiftyone"]["saved_views"] = [BY_SAMPLE_VIEW]
        if old_export is not None and old_export["fiftyone"]["dataset"]:
            delete_owned_datasets(export_dir, old_export)
    manifest["status"] = "complete"
    write_manifest(export_dir, manifest)
    return manifest, dataset_name


def _finish_directory(export_dir: Path, manifest: dict[str, Any], parts: list[Path],
                      schema: pa.Schema | None) -> None:
    """Count the conformed ``parts`` (of ``schema``), derive the objects table and card,
    into ``manifest``."""
    manifest["dynamic_columns"] = [
        {"name": f.name, "arrow_type": format_arrow_type(f.type)}
        for f in schema or [] if f.name not in VOCABULARY
    ]
    manifest["counts"] = count_records(export_dir / TABLE_DIR, parts)
    if manifest["manifest_version"] >= 2:
        from armory_datasets.store.objects_table import write_objects

        manifest["objects"]["parts"] = write_objects(export_dir, parts, manifest["class_names"])
    write_dataset_card(export_dir, manifest, parts)
