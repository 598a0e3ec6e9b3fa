"""Many writers, one export directory: per-writer journals and one atomic manifest commit.

Protocol (docs/design.md compares it with Delta Lake, Iceberg and Hadoop's committers):

1. **Join.** A writer with a ``writer_id`` creates the manifest (status "writing")
   with an atomic ``link`` that fails if one exists, or adopts the one there: every
   writer of the directory writes one export id into its rows.
2. **Write.** Each writer writes immutable files only: its parts
   ``table/part-{writer}-{n}.parquet`` (numbered on across attempts) and media under
   per-process temporary names renamed into place. After each finished part it
   rewrites its journal ``table/_writers/{writer}.json`` atomically: the parts it
   vouches for, its exporters and class names, and its status.
3. **Finish.** ``close()`` marks the journal "done"; nothing else changes.
4. **Commit.** :func:`commit_export` (rank 0 after a barrier, or ``armory-datasets
   commit DIR``) requires every journal "done", checks that no record key is in two
   writers' parts (else ``DuplicateRecordsError``, and nothing is changed or
   removed), deletes parts no journal lists (a crashed attempt's leftovers), then
   lists the journals' parts in the manifest, merges the writers' run-level metric
   states (COCO AP of the whole run) and finalises: full schema in every
   part, counts, the FiftyOne dataset, status "complete", one atomic manifest write.

Readers take the parts the manifest lists, so before the commit they see none of a
multi-writer export, after it all of it. A killed writer resumed with the same
``writer_id`` skips the records of the parts its journal lists and redoes the rest.

Example:
    >>> commit_export("exports/sharded")["status"]  # doctest: +SKIP
    'complete'
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from armory_datasets.store import media
from armory_datasets.store.manifest import (
    MANIFEST_FILE,
    from_json,
    read_manifest,
    to_json,
    validate_manifest,
    write_manifest,
)

__all__ = ["DuplicateRecordsError", "commit_export", "create_or_join", "read_journals",
           "write_journal"]

WRITERS_DIR = "_writers"  # under table/; the leading "_" hides it from Parquet readers
_WRITER_ID = re.compile(r"[A-Za-z0-9_.]{1,64}")


class DuplicateRecordsError(ValueError):
    """Two writers wrote the same record: their shards overlap. Nothing was removed.

    ``duplicates`` maps each such record key to the writers that wrote it.
    """

    def __init__(self, export_dir: Path, duplicates: dict[str, list[str]]) -> None:
        self.duplicates = duplicates
        shown = "; ".join(f"{key} by {', '.join(writers)}"
                          for key, writers in list(duplicates.items())[:5])
        super().__init__(
            f"{export_dir}: {len(duplicates)} record(s) written by more than one writer "
            f"({shown}{'; ...' if len(duplicates) > 5 else ''}); expected disjoint shards. "
            f"Nothing was committed or removed: delete one writer's parts "
            f"(table/part-{{writer}}-*.parquet and table/{WRITERS_DIR}/{{writer}}.json) "
            f"and commit again")


def check_writer_id(writer_id: str) -> str:
    """A writer id names files: 1 to 64 letters, digits, ``_`` or ``.``.

    Example:
        >>> check_writer_id("rank-1")
        Traceback (most recent call last):
        ...
        ValueError: writer_id: got 'rank-1'; expected 1 to 64 letters, digits, '_' or '.' (e.g. 'rank0')
    """
    if not isinstance(writer_id, str) or not _WRITER_ID.fullmatch(writer_id):
        raise ValueError(f"writer_id: got {writer_id!r}; expected 1 to 64 letters, digits, "
                         f"'_' or '.' (e.g. 'rank0')")
    return writer_id


def create_or_join(export_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create ``manifest.json`` from ``manifest`` unless one exists; return the one there.

    ``os.link`` of a complete temporary file is the atomic "create if absent": of writers
    starting at once, one creates it and the others read it.

    Example:
        >>> create_or_join(Path("exports/sharded"), new_manifest({"name": "x"}, 1))  # doctest: +SKIP
    """
    export_dir.mkdir(parents=True, exist_ok=True)
    validate_manifest(manifest)
    path = export_dir / MANIFEST_FILE
    tmp = path.with_name(f".{MANIFEST_FILE}.{os.getpid()}.tmp")
    tmp.write_text(to_json(manifest) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    joined = read_manifest(export_dir)
    assert joined is not None  # it was just created, or was there
    return joined


def journal_path(table_dir: Path, writer_id: str) -> Path:
    return table_dir / WRITERS_DIR / f"{writer_id}.json"


def write_journal(table_dir: Path, journal: dict[str, Any]) -> None:
    """Atomically (tmp + rename) write a writer's journal.

    Example:
        >>> write_journal(Path("t"), {"writer": "rank0", "status": "done", "parts": []})  # doctest: +SKIP
    """
    path = journal_path(table_dir, journal["writer"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(to_json(journal, indent=1) + "\n")
    os.replace(tmp, path)


def read_journals(table_dir: Path) -> dict[str, dict[str, Any]]:
    """Every writer's journal by writer id (empty for a single-writer export).

    Example:
        >>> read_journals(Path("/nonexistent"))
        {}
    """
    folder = Path(table_dir) / WRITERS_DIR
    journals = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        journal = from_json(path.read_text())
        if not isinstance(journal, dict) or journal.get("writer") != path.stem \
                or not isinstance(journal.get("parts"), list):
            raise ValueError(f"{path}: not a writer journal; expected {{'writer': "
                             f"{path.stem!r}, 'status': ..., 'parts': [...]}}")
        journals[path.stem] = journal
    return journals


def _duplicates(table_dir: Path, journals: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    writers_of: dict[str, list[str]] = defaultdict(list)
    for writer, journal in journals.items():
        for name in journal["parts"]:
            keys = pq.read_table(table_dir / name, columns=["record_key"]).column(0)
            for key in keys.to_pylist():
                writers_of[key].append(writer)
    return {key: writers for key, writers in sorted(writers_of.items()) if len(writers) > 1}


def commit_export(export_dir: str | Path) -> dict[str, Any]:
    """Commit a multi-writer export (see the module docstring); return its manifest.

    A complete export is returned as it is, so committing twice is harmless.

    Example:
        >>> commit_export("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent: no manifest.json; expected an export directory
    """
    from armory_datasets.store.finalize import TABLE_DIR, finalize_export

    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    if manifest is None:
        raise FileNotFoundError(f"{export_dir}: no {MANIFEST_FILE}; expected an export directory")
    if manifest["status"] == "complete":
        return manifest
    table_dir = export_dir / TABLE_DIR
    journals = read_journals(table_dir)
    if not journals:
        raise ValueError(f"{export_dir}: no writer journals in table/{WRITERS_DIR}; expected an "
                         f"export written with writer_id (a single writer commits itself at close)")
    unfinished = [w for w, j in journals.items() if j.get("status") != "done"]
    if unfinished:
        raise RuntimeError(f"{export_dir}: writer(s) {', '.join(unfinished)} have not finished "
                           f"(crashed or still running); resume each with its writer_id, then commit")
    others = [(w, j["export_id"]) for w, j in journals.items() if j.get("export_id") != manifest["export_id"]]
    if others:
        raise ValueError(f"{export_dir}: writer(s) {others} wrote another export than "
                         f"{manifest['export_id']}; expected one export per directory")
    listed = {name for journal in journals.values() for name in journal["parts"]}
    missing = sorted(name for name in listed if not (table_dir / name).is_file())
    if missing:
        raise FileNotFoundError(f"{export_dir}: parts {missing} are listed by writer journals but "
                                f"missing; expected a complete copy of the directory")
    duplicates = _duplicates(table_dir, journals)
    if duplicates:
        raise DuplicateRecordsError(export_dir, duplicates)
    _agree(export_dir, manifest, journals)
    manifest["metrics"] = merged_run_metrics(journals, manifest["class_names"])
    for part in table_dir.glob("part-*.parquet"):
        if part.name not in listed:
            part.unlink()  # an attempt's part that its writer never vouched for
    for entry in (TABLE_DIR, "media"):
        media.remove_tmp_files(export_dir / entry)
    write_manifest(export_dir, manifest)
    return finalize_export(export_dir)[0]


def merged_run_metrics(journals: dict[str, dict[str, Any]],
                       class_names: list[str] | None) -> dict[str, Any]:
    """The exporters' run-level metrics of the whole run, from each writer's shard state:
    COCO average precision is not a mean of shards, so the detections are merged first.

    Example:
        >>> merged_run_metrics({"rank0": {"metric_states": {}}}, None)
        {}
    """
    from armory_datasets.detection.average_precision import AveragePrecision

    states: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for journal in journals.values():
        for exporter, per_chain in (journal.get("metric_states") or {}).items():
            for chain, state in per_chain.items():
                states[exporter][chain].append(state)
    out: dict[str, Any] = {}
    for exporter, per_chain in states.items():
        out[exporter] = {}
        for chain, shard_states in per_chain.items():
            out[exporter][chain] = AveragePrecision.merged(shard_states).result(list(class_names or []))
    return out


def _agree(export_dir: Path, manifest: dict[str, Any], journals: dict[str, dict[str, Any]]) -> None:
    """Put the writers' exporters and class names in ``manifest``; they must agree."""
    for key in ("exporters", "class_names"):
        values = {json.dumps(j.get(key), sort_keys=True): w for w, j in journals.items()
                  if j.get(key) not in (None, [])}
        if len(values) > 1:
            shown = ", ".join(f"{w}: {v}" for v, w in values.items())
            raise ValueError(f"{export_dir}: writers disagree on {key} ({shown}); expected "
                             f"one evaluation in every writer")
        if values:
            manifest[key] = json.loads(next(iter(values)))
