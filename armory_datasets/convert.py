"""Convert an export's selected records to a training format: COCO, YOLO, ImageFolder, HF.

``convert(export, out, format, where=None, split=None)`` writes ``out/{chain}/...``:
each chain is its own dataset (benign and attacked copies of a sample never collide),
laid out by the format's own exporter:

- ``coco`` (detection): ``{chain}/{split}/data/*.png`` + ``labels.json``, FiftyOne's
  ``COCODetectionDataset``; category ``id`` is the export's class index.
- ``yolo`` (detection): ``{chain}/dataset.yaml``, ``images/{split}``, ``labels/{split}``,
  FiftyOne's ``YOLOv5Dataset``; class ids and names are the manifest's, in its order.
- ``imagefolder`` (classification): ``{chain}/{split}/{class}/*.png``, FiftyOne's
  ``ImageClassificationDirectoryTree``. Readers number classes by sorted folder
  name, so when the class names do not sort in class-index order the folders are
  ``{index:0Nd}-{name}`` (so that they do).
- ``hf`` (classification or detection): ``{chain}/`` a ``datasets.DatasetDict`` saved
  with ``save_to_disk`` (images embedded, ``ClassLabel`` names), read back with
  ``datasets.load_from_disk``.

Splits (``split=(0.8, 0.2)`` -> ``train``, ``val``; three -> ``train``, ``val``,
``test``; none -> all in ``train``) are drawn by ``sample_index`` with ``seed``, so
every chain of one sample lands in the same split and no sample is in two. A split
a chain has no record in is not written. ``out`` is written under a temporary name
and renamed when complete. COCO, YOLO and ImageFolder need the ``[fiftyone]`` extra,
``hf`` the ``[hf]`` extra.

Example:
    >>> from armory_datasets import open_export
    >>> from armory_datasets.demo.tiny import tiny_detection_export
    >>> out = convert(open_export(tiny_detection_export()), "yolo-out", "yolo", split=(0.75, 0.25))
    >>> sorted(p.name for p in (out / "noisy").iterdir())
    ['dataset.yaml', 'images', 'labels']
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from armory_datasets.reading import Export, Where

__all__ = ["FORMATS", "SPLIT_NAMES", "assign_splits", "class_names", "convert", "parse_split"]

FORMATS = {"coco": "detection", "yolo": "detection", "imagefolder": "classification",
           "hf": None}
SPLIT_NAMES = ("train", "val", "test")


def parse_split(split: str | Sequence[float] | None) -> tuple[float, ...]:
    """Split fractions from ``"0.8,0.2"`` or a sequence; positive, at most 3, summing to 1.

    Example:
        >>> parse_split("0.8,0.2")
        (0.8, 0.2)
        >>> parse_split("0.5,0.6")
        Traceback (most recent call last):
        ...
        ValueError: split: got 0.5,0.6 (sum 1.1); expected 1 to 3 positive fractions summing to 1, such as 0.8,0.2
    """
    if split is None:
        return (1.0,)
    text = split if isinstance(split, str) else ",".join(str(f) for f in split)
    try:
        fractions = tuple(float(part) for part in text.split(","))
    except ValueError:
        fractions = ()
    total = sum(fractions)
    if not 1 <= len(fractions) <= len(SPLIT_NAMES) or min(fractions, default=0) <= 0 \
            or abs(total - 1) > 1e-6:
        raise ValueError(f"split: got {text} (sum {total:g}); expected 1 to 3 positive "
                         f"fractions summing to 1, such as 0.8,0.2")
    return fractions


def assign_splits(sample_indices: Sequence[int] | np.ndarray, fractions: Sequence[float],
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted unique sample indices of each split, drawn by a seeded permutation.

    Example:
        >>> {k: v.tolist() for k, v in assign_splits([3, 1, 3, 2, 0], (0.5, 0.5)).items()}
        {'train': [0, 2], 'val': [1, 3]}
    """
    unique = np.unique(np.asarray(sample_indices, dtype=np.int64))
    shuffled = unique[np.random.default_rng(seed).permutation(len(unique))]
    bounds = np.round(np.cumsum(fractions) * len(unique)).astype(int)
    return {name: np.sort(part) for name, part in
            zip(SPLIT_NAMES, np.split(shuffled, bounds[:-1]))}


def class_names(export: Export) -> list[str]:
    """The export's class names in class-index order: the manifest's, else ``"0"``,
    ``"1"``, ... up to the largest label in the table.

    Example:
        >>> from armory_datasets import open_export
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> class_names(open_export(tiny_export()))
        ['cat', 'dog', 'bird']
    """
    if export.manifest.get("class_names"):
        return list(export.manifest["class_names"])
    if export.task == "detection":
        query = "SELECT max(o.label) FROM (SELECT unnest(ground_truth_objects) AS o FROM samples)"
    else:
        query = "SELECT max(target) FROM samples"
    largest = export.duckdb().sql(query).fetchall()[0][0]
    return [str(i) for i in range(0 if largest is None else largest + 1)]


def convert(export: Export, out: str | Path, format: str, where: Where = None,
            split: str | Sequence[float] | None = None, seed: int = 0) -> Path:
    """Write the records matching ``where`` to ``out`` in ``format`` (module docstring).

    Example:
        >>> from armory_datasets import open_export
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> out = convert(open_export(tiny_export()), "folders", "imagefolder", where="~correct")
        >>> sorted(str(p.relative_to(out)) for p in out.glob("*/*/*"))
        ['noisy/train/0-cat', 'noisy/train/1-dog']
    """
    if format not in FORMATS:
        raise ValueError(f"format: got {format!r}; expected one of {', '.join(FORMATS)}")
    needs = FORMATS[format]
    if needs is not None and export.task != needs:
        fits = ", ".join(f for f, task in FORMATS.items() if task in (export.task, None))
        raise ValueError(f"format {format!r}: needs a {needs} export; this export is "
                         f"{export.task} (use {fits})")
    fractions = parse_split(split)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not an empty directory; expected a new "
                              f"destination for the converted dataset")
    records = export.table(where, columns=["chain", "sample_index"])
    splits = assign_splits(records.column("sample_index").to_numpy(), fractions, seed)
    names = class_names(export)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write = _write_hf if format == "hf" else _write_fiftyone
        write(export, staging, format, where, splits, names)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _folder_names(names: list[str]) -> dict[str, str]:
    """Class name -> ImageFolder folder name, so that sorted folders follow class indices."""
    if names == sorted(names) and len(set(names)) == len(names):
        return {name: name for name in names}
    width = len(str(len(names) - 1))
    return {name: f"{i:0{width}d}-{name}" for i, name in enumerate(names)}


def _write_fiftyone(export: Export, root: Path, format: str, where: Where,
                    splits: dict[str, np.ndarray], names: list[str]) -> None:
    """COCO, YOLO and ImageFolder through FiftyOne's exporters, one chain and split at a time."""
    from armory_datasets.database import import_fiftyone

    fo = import_fiftyone()
    from fiftyone import ViewField as F

    # YOLO writes each split into the chain's one dataset directory, on purpose.
    logging.getLogger("fiftyone.core.collections").addFilter(_quiet_merge_notice)
    view = export.fiftyone(where)
    for chain in view.distinct("chain"):
        for split, indices in splits.items():
            part = view.match((F("chain") == chain) & F("sample_index").is_in(indices.tolist()))
            if len(part) == 0:
                continue
            if format == "coco":
                part.export(export_dir=str(root / chain / split),
                            dataset_type=fo.types.COCODetectionDataset,
                            label_field="ground_truth", progress=False,
                            categories=[{"id": i, "name": n, "supercategory": None}
                                        for i, n in enumerate(names)])
            elif format == "yolo":
                part.export(export_dir=str(root / chain), dataset_type=fo.types.YOLOv5Dataset,
                            label_field="ground_truth", split=split, classes=names,
                            progress=False)
                _relative_yolo_root(root / chain / "dataset.yaml")
            else:
                folders = _folder_names(names)
                if any(name != folder for name, folder in folders.items()):
                    part = part.map_labels("ground_truth", folders)
                part.export(export_dir=str(root / chain / split),
                            dataset_type=fo.types.ImageClassificationDirectoryTree,
                            label_field="ground_truth", progress=False)


def _relative_yolo_root(config: Path) -> None:
    """Drop the absolute ``path:`` FiftyOne writes (the staging directory): YOLOv5,
    Ultralytics and FiftyOne then resolve the splits next to ``dataset.yaml``."""
    import yaml  # PyYAML, a dependency of fiftyone

    settings = yaml.safe_load(config.read_text())
    settings.pop("path", None)
    config.write_text(yaml.safe_dump(settings, sort_keys=False))


def _quiet_merge_notice(record: logging.LogRecord) -> bool:
    """Drop FiftyOne's notice that an export merges into an existing directory."""
    return "export will be merged with" not in record.getMessage()


def _write_hf(export: Export, root: Path, format: str, where: Where,
              splits: dict[str, np.ndarray], names: list[str]) -> None:
    """One ``DatasetDict`` per chain, saved with its images embedded, quietly (as the other
    formats: ``datasets`` shows its progress bars again afterwards, if it did)."""
    import datasets

    from armory_datasets.hf import to_hf

    dataset = to_hf(export, where)
    keys = dataset.select_columns(["chain", "sample_index"]).to_dict()
    chains, sample_indices = np.array(keys["chain"], dtype=object), np.array(keys["sample_index"])
    shown = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        for chain in sorted(set(keys["chain"])):
            rows = np.flatnonzero(chains == chain)
            parts = {}
            for split, indices in splits.items():
                chosen = rows[np.isin(sample_indices[rows], indices)]
                if len(chosen):
                    parts[split] = dataset.select(chosen)
            datasets.DatasetDict(parts).save_to_disk(str(root / chain))
    finally:
        if shown:
            datasets.enable_progress_bars()
