"""Check an export directory against its manifest and the schemas; repair what can be.

``verify_export(path)`` reads everything: the manifest (JSON, versions, schema), every
listed table part in full (footer, row groups, vocabulary types, export id, duplicate
record keys, counts), every image and heatmap a record names (confined to the export,
present, decodable: PNG, and TIFF or PNG heatmaps), and the table folder for stray or
half-written parts, and the objects table (``objects/``: one part per table part with
boxes, holding exactly its boxes). Each :class:`Problem` has its path and the fix.

``verify_export(path, repair=True)`` never deletes data: damaged or stray parts and
damaged media move into ``quarantine/`` (same relative path), the readable rows of a
damaged part are kept, records that lost their part or media are listed
(``lost_records``) and dropped from the table, a manifest that cannot be read is
rebuilt from the parts, the counts are re-derived and the objects table is derived
again from the kept table (a damaged objects part is quarantined first). An export that lost records is
marked "writing", so running the export again resumes it and recomputes only those.

Example:
    >>> report = verify_export("exports/run1", repair=True)  # doctest: +SKIP
    >>> report.ok, report.lost_records  # doctest: +SKIP
    (True, ['fgsm/17'])
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from armory_datasets.store.commit import WRITERS_DIR
from armory_datasets.store.manifest import (
    MANIFEST_FILE,
    export_directory,
    format_arrow_type,
    is_part_name,
    new_manifest,
    UnsupportedVersionError,
    read_manifest,
    write_manifest,
)
from armory_datasets.store.parquet_writer import parquet_options
from armory_datasets.schema import VOCABULARY
from armory_datasets.untrusted import DamagedExportError, UnsafePathError, heatmap_fields, inside_export

__all__ = ["Problem", "VerifyReport", "verify_export"]

QUARANTINE = "quarantine"
TABLE = "table"
_IMAGE = re.compile(r"^media/images/([^/]+)/([0-9]+)\.png$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong: the file (relative to the export), what is wrong, and the fix.

    Example:
        >>> str(Problem("table/part-00001.parquet", "not listed in manifest.json", "repair"))
        'table/part-00001.parquet: not listed in manifest.json; fix: repair'
    """

    path: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}; fix: {self.fix}"


@dataclass
class VerifyReport:
    """What :func:`verify_export` found (and, with ``repair``, did).

    Example:
        >>> VerifyReport(Path("/e")).ok
        True
    """

    export_dir: Path
    problems: list[Problem] = field(default_factory=list)
    lost_records: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    repaired: bool = False
    records: int = 0
    status: str | None = None  # the manifest's ("writing": incomplete), None without one

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (after repair: nothing was left unrepaired)."""
        return not self.problems or self.repaired

    def __str__(self) -> str:
        incomplete = "; incomplete (status 'writing')" if self.status == "writing" else ""
        lines = [f"{self.export_dir}: {self.records} readable records, "
                 f"{len(self.problems)} problem(s){incomplete}"]
        lines += [f"  {p}" for p in self.problems]
        if incomplete and not self.lost_records:
            lines.append("  run the export again into this directory to finish it")
        if self.repaired:
            lines += [f"  quarantined: {q}" for q in self.quarantined]
            lines.append(f"  lost records ({len(self.lost_records)}): "
                         f"{', '.join(self.lost_records) or '-'}")
            if self.lost_records:
                lines.append("  run the export again into this directory: it resumes and "
                             "recomputes only the lost records")
        return "\n".join(lines)


def verify_export(path: str | Path, repair: bool = False) -> VerifyReport:
    """Check (and with ``repair=True`` repair) the export at ``path``; see the module docstring.

    Example:
        >>> verify_export("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent: no such directory; expected an export directory (manifest.json, table/, media/)
    """
    check = _Check(export_directory(path), repair)
    try:
        return check.run()
    except _Stop:
        return check.report


class _Stop(Exception):
    """Nothing more can be checked (an export of an unknown version)."""


class _Check:
    """One verification (and repair) pass over an export directory."""

    def __init__(self, root: Path, repair: bool) -> None:
        self.root, self.repair = root, repair
        self.report = VerifyReport(root)
        self.dropped: set[str] = set()  # records whose media are damaged or unsafe
        self.bad_objects: list[Path] = []  # objects parts to quarantine before deriving them again
        self.rewrite = "armory-datasets verify --repair"

    def problem(self, path: Path | str, problem: str, fix: str | None = None) -> None:
        relative = os.path.relpath(path, self.root) if isinstance(path, Path) else path
        self.report.problems.append(Problem(relative, problem, fix or f"run `{self.rewrite} {self.root}`"))

    def quarantine(self, path: Path) -> None:
        """Move ``path`` under quarantine/ at its relative path (never overwriting)."""
        relative = path.relative_to(self.root)
        target = self.root / QUARANTINE / relative
        n = 0
        while target.exists():
            n += 1
            target = self.root / QUARANTINE / relative.with_name(f"{relative.name}.{n}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        self.report.quarantined.append(str(target.relative_to(self.root)))

    # -------------------------------------------------------------- the pass

    def run(self) -> VerifyReport:
        manifest, salvage = self.manifest()
        self.report.status = manifest["status"] if manifest else None
        listed = manifest["table"]["parts"] if manifest else self.found_parts()
        rows: list[tuple[Path, pa.Table, bool]] = []
        for name in listed:
            part = self.root / TABLE / name
            table, bad_rows = self.part(part, manifest)
            if table is not None:
                rows.append((part, table, bad_rows))
        for stray in self.stray(listed):
            self.problem(stray, f"not a part listed in {MANIFEST_FILE} (left by a killed or "
                                f"foreign writer; never read)",
                         f"run `{self.rewrite} {self.root}` to move it into {QUARANTINE}/")
            if self.repair:
                self.quarantine(stray)
        kept = self.records(rows, manifest)
        self.objects(rows, manifest)
        lost = self.lost(kept, manifest)
        self.report.records = sum(t.num_rows for _, t, _ in kept)
        if manifest is not None:
            self.counts(kept, manifest)
        if self.repair and (self.report.problems or manifest is None):
            self.fix(kept, manifest or salvage, lost)
        return self.report

    # -------------------------------------------------------------- manifest

    def manifest(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The manifest, or None and what could be salvaged of it."""
        path = self.root / MANIFEST_FILE
        try:
            manifest = read_manifest(self.root)
        except UnsupportedVersionError as error:
            self.problem(path, _cause(error), "open it with the armory_datasets release that "
                                              "wrote it, or a newer one (nothing to repair)")
            raise _Stop from None
        except DamagedExportError as error:
            self.problem(path, _cause(error),
                         f"run `{self.rewrite} {self.root}` to rebuild it from the table parts")
            return None, _salvage(path)
        if manifest is None:
            self.problem(path, "missing", f"run `{self.rewrite} {self.root}` to rebuild it "
                                          f"from the table parts")
            return None, {}
        return manifest, {}

    def found_parts(self) -> list[str]:
        return sorted(p.name for p in (self.root / TABLE).glob("part-*.parquet")
                      if is_part_name(p.name) and p.is_file() and not p.is_symlink())

    def stray(self, listed: list[str]) -> list[Path]:
        table = self.root / TABLE
        if not table.is_dir():
            return []
        # The writers' journals (store/commit.py) belong to a multi-writer export.
        journals = table / WRITERS_DIR
        return sorted(p for p in table.iterdir() if p.name not in listed
                      and not (p == journals and p.is_dir() and not p.is_symlink()))

    # -------------------------------------------------------------- parts

    def part(self, part: Path, manifest: dict[str, Any] | None) -> tuple[pa.Table | None, bool]:
        """The part's readable rows (None if none) and whether some row group failed."""
        from armory_datasets.reading import part_schema

        if part.is_symlink() or not part.is_file():
            self.problem(part, f"listed in {MANIFEST_FILE} but missing (or not a regular file)",
                         f"copy it from the original export, or run `{self.rewrite} "
                         f"{self.root}` to drop it and recompute its records")
            return None, False
        try:
            part_schema(part, self.root)
            source = pq.ParquetFile(part)
        except (DamagedExportError, OSError, pa.ArrowException) as error:
            self.problem(part, f"cannot be read as a table part ({_cause(error)})",
                         f"run `{self.rewrite} {self.root}` to quarantine it and recompute "
                         f"its records")
            return None, False
        groups: list[pa.Table] = []
        bad: list[int] = []
        for group in range(source.num_row_groups):
            try:
                groups.append(source.read_row_group(group))
            except (OSError, pa.ArrowException) as error:
                bad.append(group)
                self.problem(part, f"row group {group} cannot be decoded ({_cause(error)})",
                             f"run `{self.rewrite} {self.root}` to keep its readable rows and "
                             f"recompute the others")
        if manifest is not None:
            for table in groups:
                ids = set(table.column("export_id").to_pylist()) - {manifest["export_id"]}
                if ids:
                    self.problem(part, f"holds records of other exports {sorted(ids)}",
                                 f"run `{self.rewrite} {self.root}` to quarantine it")
                    return None, False
        table = pa.concat_tables(groups) if groups else source.schema_arrow.empty_table()
        return table, bool(bad)

    def records(self, rows: list[tuple[Path, pa.Table, bool]],
                manifest: dict[str, Any] | None) -> list[tuple[Path, pa.Table, bool]]:
        """Each part's rows whose key is new and whose media are readable."""
        seen: set[str] = set()
        kept = []
        for part, table, bad in rows:
            keys = table.column("record_key").to_pylist()
            good = []
            for i, key in enumerate(keys):
                if key in seen:
                    self.problem(part, f"record {key!r} is in the table twice",
                                 f"run `{self.rewrite} {self.root}` to keep its first copy")
                elif self.media_ok(table, i, key):
                    good.append(i)
                else:
                    self.dropped.add(key)
                seen.add(key)
            dropped = len(good) < len(keys)
            kept.append((part, table.take(good) if dropped else table, bool(bad) or dropped))
        return kept

    def media_ok(self, table: pa.Table, i: int, key: str) -> bool:
        ok = self.medium(table, i, key, "image_path", "media/images/", _read_png)
        for column in _heatmap_columns(table.schema):
            ok &= self.medium(table, i, key, column,
                              f"media/heatmaps/{column[: -len('_path')]}/", _read_heatmap)
        return ok

    def medium(self, table: pa.Table, i: int, key: str, column: str, under: str,
               read: Any) -> bool:
        if column not in table.column_names:
            return True
        value = table.column(column)[i].as_py()
        if value is None:
            return column != "image_path"
        try:
            path = inside_export(self.root, value, f"record {key!r} {column}", under)
        except UnsafePathError as error:
            self.problem(TABLE, str(error), f"run `{self.rewrite} {self.root}` to drop the "
                                            f"record and recompute it")
            return False
        if not path.is_file():
            self.problem(path, f"missing (the {column} of record {key!r})",
                         f"copy it from the original export, or run `{self.rewrite} "
                         f"{self.root}` to recompute the record")
            return False
        try:
            read(path)
        except Exception as error:  # noqa: BLE001 -- any decoder error means a damaged file
            self.problem(path, f"cannot be decoded ({_cause(error)}; the {column} of record "
                               f"{key!r})", f"run `{self.rewrite} {self.root}` to quarantine "
                                            f"it and recompute the record")
            if self.repair:
                self.quarantine(path)
            return False
        return True

    # -------------------------------------------------------------- counts, lost records

    def counts(self, kept: list[tuple[Path, pa.Table, bool]], manifest: dict[str, Any]) -> None:
        expected = manifest["counts"]
        if expected is None:
            return
        derived = _count(kept)
        if derived != expected:
            self.problem(MANIFEST_FILE, f"counts say {expected['records']} records "
                                        f"({expected['per_chain']}); the readable table has "
                                        f"{derived['records']} ({derived['per_chain']})",
                         f"run `{self.rewrite} {self.root}` to re-derive them")

    def lost(self, kept: list[tuple[Path, pa.Table, bool]],
             manifest: dict[str, Any] | None) -> list[str]:
        """Record keys of the table that a repair drops: every key the export had (by its
        images and its readable rows) that is not kept."""
        kept_keys = {k for _, t, _ in kept for k in t.column("record_key").to_pylist()}
        had = set()
        images = self.root / "media" / "images"
        for image in images.glob("*/*.png") if images.is_dir() else ():
            match = _IMAGE.match(image.relative_to(self.root).as_posix())
            if match:
                had.add(f"{match.group(1)}/{int(match.group(2))}")
        for entry in self.report.quarantined:
            match = _IMAGE.match(entry.removeprefix(f"{QUARANTINE}/"))
            if match:
                had.add(f"{match.group(1)}/{int(match.group(2))}")
        had |= self.dropped
        if not self.report.problems:
            return []
        return sorted(had - kept_keys, key=_key_order)

    # -------------------------------------------------------------- objects

    def objects(self, rows: list[tuple[Path, pa.Table, bool]], manifest: dict[str, Any] | None) -> None:
        """Each table part with boxes has its objects part, with exactly its boxes."""
        from armory_datasets.store.objects_table import OBJECT_COLUMNS

        if manifest is None or "objects" not in manifest:
            return
        folder = self.root / manifest["objects"]["dir"]
        listed = manifest["objects"]["parts"]
        boxes = {part.name: sum(int(pc.sum(pc.list_value_length(table.column(c))).as_py() or 0)
                                for c in OBJECT_COLUMNS if c in table.column_names)
                 for part, table, _ in rows}
        for name in listed:
            path = folder / name
            if path.is_symlink() or not path.is_file():
                self.problem(path, f"listed in {MANIFEST_FILE} but missing (or not a regular file)")
                continue
            try:
                found = pq.read_table(path).num_rows
            except (OSError, pa.ArrowException) as error:
                self.problem(path, f"cannot be read as an objects part ({_cause(error)})",
                             f"run `{self.rewrite} {self.root}` to quarantine it and derive it again")
                self.bad_objects.append(path)
                continue
            if found != boxes.get(name):
                self.problem(path, f"{found} boxes; its table part holds {boxes.get(name, 0)}",
                             f"run `{self.rewrite} {self.root}` to derive it again from the table")
                self.bad_objects.append(path)
        for name, n in boxes.items():
            if n and name not in listed:
                self.problem(folder / name, f"missing: table/{name} holds {n} boxes",
                             f"run `{self.rewrite} {self.root}` to derive it from the table")
        for stray in sorted(folder.iterdir()) if folder.is_dir() else ():
            if stray.name not in listed:
                self.problem(stray, f"not an objects part listed in {MANIFEST_FILE} (never read)")
                self.bad_objects.append(stray)

    # -------------------------------------------------------------- repair

    def fix(self, kept: list[tuple[Path, pa.Table, bool]], manifest: dict[str, Any],
            lost: list[str]) -> None:
        listed = []
        for part, table, changed in kept:
            if changed:  # rows dropped: the original goes to quarantine, the rest stays
                self.quarantine(part)
                tmp = part.with_name(part.name + ".tmp")
                pq.write_table(table, tmp, **parquet_options(table.schema))
                os.replace(tmp, part)
            listed.append(part.name)
        table_dir = self.root / TABLE
        for part in sorted(table_dir.glob("part-*.parquet")) if table_dir.is_dir() else ():
            if part.name not in listed:
                self.quarantine(part)
        if not manifest.get("manifest_version"):
            manifest = self.rebuilt_manifest(manifest, kept)
        manifest["table"]["parts"] = listed
        if "objects" in manifest:
            from armory_datasets.store.objects_table import write_objects

            for path in self.bad_objects:
                if path.exists() or path.is_symlink():
                    self.quarantine(path)
            manifest["objects"]["parts"] = write_objects(
                self.root, [table_dir / name for name in listed], manifest["class_names"])
        manifest["counts"] = _count(kept)
        if lost:
            manifest["status"] = "writing"
        write_manifest(self.root, manifest)
        self.report.status = manifest["status"]
        self.report.lost_records = lost
        self.report.repaired = True

    def rebuilt_manifest(self, salvaged: dict[str, Any], kept: list[tuple[Path, pa.Table, bool]]) -> dict[str, Any]:
        """A manifest from what the damaged one still held and the parts' schemas."""
        evaluation = salvaged.get("evaluation") or {"name": self.root.name}
        manifest = new_manifest(evaluation, 1)
        ids = Counter(i for _, t, _ in kept for i in t.column("export_id").to_pylist())
        manifest["export_id"] = ids.most_common(1)[0][0] if ids else salvaged.get(
            "export_id", manifest["export_id"])
        if salvaged.get("created_at"):
            manifest["created_at"] = salvaged["created_at"]
        schemas = [t.schema for _, t, _ in kept]
        schema = pa.unify_schemas(schemas) if schemas else pa.schema([])
        manifest["dynamic_columns"] = [{"name": f.name, "arrow_type": format_arrow_type(f.type)}
                                       for f in schema if f.name not in VOCABULARY]
        self.report.problems.append(Problem(MANIFEST_FILE, "rebuilt from the table parts: "
                                            "exporters and class names are lost",
                                            "re-run the export to restore them"))
        return manifest


def _salvage(path: Path) -> dict[str, Any]:
    """The keys a truncated manifest still shows (it is written in a fixed order)."""
    if path.is_symlink() or not path.is_file():
        return {}  # never follow a link out of the export
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return {}
    found: dict[str, Any] = {}
    for key in ("export_id", "created_at"):
        match = re.search(rf'"{key}":\s*"([^"\\]*)"', text)
        if match:
            found[key] = match.group(1)
    match = re.search(r'"evaluation":\s*\{[^{}]*?"name":\s*("(?:[^"\\]|\\.)*")', text)
    if match:
        found["evaluation"] = {"name": json.loads(match.group(1))}
    return found


def _count(kept: list[tuple[Path, pa.Table, bool]]) -> dict[str, Any]:
    per_chain: Counter[str] = Counter()
    per_exporter: Counter[str] = Counter()
    for _, table, _ in kept:
        per_chain.update(table.column("chain").to_pylist())
        for names in table.column("exporters").to_pylist() if "exporters" in table.column_names else ():
            per_exporter.update(names or [])
    return {"records": sum(per_chain.values()), "per_chain": dict(sorted(per_chain.items())),
            "per_exporter": dict(sorted(per_exporter.items()))}


def _heatmap_columns(schema: pa.Schema) -> list[str]:
    """``{field}_path`` columns of saliency fields (the FiftyOne build's rule)."""
    return [f"{field}_path" for field in heatmap_fields(schema.names, VOCABULARY)]


def _read_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        if image.format != "PNG":
            raise ValueError(f"a {image.format} file, not a PNG")
        image.load()


def _read_heatmap(path: Path) -> None:
    """A 16-bit PNG heatmap (with its range) or an older export's float32 TIFF, decoded in full."""
    from armory_datasets.store.media import read_heatmap

    if read_heatmap(path).ndim != 2:
        raise ValueError("not a 2-D map")


def _cause(error: BaseException) -> str:
    text = error.cause if isinstance(error, DamagedExportError) else str(error)
    return " ".join(text.split()) or type(error).__name__


def _key_order(key: str) -> tuple[str, int]:
    chain, _, index = key.rpartition("/")
    return chain, int(index) if index.isdigit() else -1
