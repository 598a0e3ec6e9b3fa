"""The FiftyOne dataset of an export directory: load it if the database has it, else build it.

The dataset named in the manifest (``{evaluation}-{export_id}``) is used when its
``info`` says it was built from this export id and directory and it holds one sample
per table record. A copy of the export opened on the same machine (same export id,
another directory, whose media the original dataset does not point to) gets its own
dataset, ``{name}-copy-{hash of the directory}``, so the original is left alone.
Anything else is (re)built from the directory, once however many processes ask at once.

Example:
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> from armory_datasets.reading import open_export
    >>> export_dataset(open_export(tiny_export())).count("ground_truth")
    16
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from armory_datasets.criteria import Criterion
from armory_datasets.store.fiftyone_import import export_fiftyone_dataset
from armory_datasets.store.manifest import default_dataset_name

if TYPE_CHECKING:
    from armory_datasets.reading import Export


def dataset_name(export: Export) -> str:
    """The name of the export's dataset: the manifest's, or its default.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> from armory_datasets.reading import open_export
        >>> dataset_name(open_export(tiny_export()))
        'tiny-...'
    """
    return export.manifest["fiftyone"]["dataset"] or default_dataset_name(export.manifest)


def export_dataset(export: Export, rebuild: bool = False) -> Any:
    """The persistent FiftyOne dataset of ``export`` (loaded, or built from its directory).

    ``rebuild=True`` builds it again even when an up-to-date one exists. Ownership and
    locking: ``armory_datasets.store.fiftyone_import.export_fiftyone_dataset``.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> from armory_datasets.reading import open_export
        >>> export_dataset(open_export(tiny_export())).count()
        16
    """
    from armory_datasets.database import database_errors

    with database_errors(f"loading the FiftyOne dataset of {export.path}"):
        return export_fiftyone_dataset(export.path, rebuild=rebuild,
                                       expected_count=export.count())


def match(dataset: Any, criterion: Criterion | None) -> Any:
    """The samples of ``dataset`` (all group slices, if grouped) matching ``criterion``.

    Example:
        >>> from armory_datasets.criteria import parse
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> from armory_datasets.reading import open_export
        >>> dataset = export_dataset(open_export(tiny_export()))
        >>> match(dataset, parse("~correct")).count()
        3
    """
    view = dataset.select_group_slices(_allow_mixed=True) if dataset.media_type == "group" \
        else dataset.view()
    return view if criterion is None else view.match(criterion.to_fiftyone())
