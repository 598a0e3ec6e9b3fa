"""Fuzz the reading side: random corruptions of a real export, read the way users read it.

Each case copies a digits export (classification, heatmaps, two table parts), applies
one seeded corruption (truncation, bit flips, zeroed range, appended junk, deleted file,
file replaced by a folder or by a symlink leading outside, extra files, hostile manifest
values) and then opens, queries (pyarrow, DuckDB), loads every torch item with its
heatmap, verifies, and for every fourth case repairs and reads again; every twentieth
case also rebuilds the FiftyOne dataset. A case passes when it reads, or ends in an error
naming a file (or record) of the export. Never another exception type, never a Python
open() outside the export (an audit hook watches), never longer than a time limit.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sys
import warnings
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from armory_datasets import open_export
from armory_datasets.reading import CriterionError
from armory_datasets.schema import SCHEMAS_DIR
from armory_datasets.untrusted import DamagedExportError, UnsafePathError
from armory_datasets.verify import verify_export
from test_reading_support import HEATMAP, digits_export

CASES = 240
SECONDS_PER_CASE = 60
HOSTILE_VALUES = [
    None, True, 2, -1, 1.5, "", "..", "../../etc/passwd", "/etc/passwd", "$chain", "a" * 5000,
    [], {}, ["part-00000.parquet", "part-00000.parquet"], ["../part-00000.parquet"],
    ["part-99999.parquet"], {"records": -5}, [{"name": "x", "arrow_type": "list<>"}],
    "media/images/{chain}/../../../{sample_index}.png", "\x00", {"name": 3},
]
MANIFEST_KEYS = [
    ("manifest_version",), ("table_version",), ("export_id",), ("status",), ("counts",),
    ("table", "parts"), ("table", "dir"), ("dynamic_columns",), ("class_names",),
    ("media", "images"), ("media", "heatmaps"), ("fiftyone", "dataset"), ("evaluation",),
    ("evaluation", "name"), ("exporters",), ("counts", "records"),
]


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return digits_export(tmp_path_factory.mktemp("fuzz") / "run1", n=32, batch_size=8,
                         fiftyone=False, name="digits-fuzz")


class Outside:
    """Audit hook: records every Python-level open() of export-like files outside ``root``."""

    root: Path | None = None
    seen: list[str] = []

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if event != "open" or cls.root is None or not isinstance(args[0], (str, Path)):
            return
        path = str(args[0])
        if path.endswith((".png", ".tif", ".parquet", ".json", "passwd")) and \
                not Path(path).resolve().is_relative_to(cls.root) and "site-packages" not in path \
                and not Path(path).resolve().is_relative_to(SCHEMAS_DIR.resolve()):  # the package's own
            cls.seen.append(path)


sys.addaudithook(Outside.hook)


def corrupt(root: Path, rng: random.Random, outside: Path) -> str:
    """Apply one random corruption to the export at ``root``; return what was done."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    kind = rng.choice(["truncate", "flip", "zero", "append", "delete", "folder", "symlink",
                       "extra", "manifest", "manifest", "flip", "truncate"])
    if kind == "manifest":
        return hostile_manifest(root, rng)
    if kind == "extra":
        return extra_file(root, rng)
    weights = [5 if p.suffix == ".parquet" else 4 if p.name == "manifest.json" else 1 for p in files]
    path = rng.choices(files, weights)[0]
    data = bytearray(path.read_bytes())
    if kind == "truncate":
        cut = rng.randrange(len(data) + 1)
        path.write_bytes(bytes(data[:cut]))
    elif kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
    elif kind == "zero":
        start = rng.randrange(len(data))
        data[start:start + rng.randint(1, 512)] = bytes(len(data[start:start + 512]))
        path.write_bytes(bytes(data))
    elif kind == "append":
        path.write_bytes(bytes(data) + rng.randbytes(rng.randint(1, 300)))
    elif kind == "delete":
        path.unlink()
    elif kind == "folder":
        path.unlink()
        path.mkdir()
    elif kind == "symlink":
        path.unlink()
        path.symlink_to(outside if rng.random() < 0.5 else "/etc/passwd")
    return f"{kind} {path.relative_to(root)}"


def hostile_manifest(root: Path, rng: random.Random) -> str:
    manifest = json.loads((root / "manifest.json").read_text())
    keys = rng.choice(MANIFEST_KEYS)
    value = rng.choice(HOSTILE_VALUES)
    target = manifest
    for key in keys[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[keys[-1]] = value
    (root / "manifest.json").write_text(json.dumps(manifest))
    return f"manifest {'.'.join(keys)} = {str(value)[:40]!r}"


def extra_file(root: Path, rng: random.Random) -> str:
    choice = rng.randrange(3)
    if choice == 0:  # a stray part of another export
        table = pq.read_table(root / "table/part-00000.parquet").slice(0, 5)
        table = table.set_column(0, "export_id", pa.array(["20990101T000000Z-deadbeef"] * 5))
        pq.write_table(table, root / "table/part-00042.parquet")
        return "extra stray part"
    if choice == 1:
        (root / "table/part-00003.parquet.tmp").write_bytes(rng.randbytes(100))
        return "extra half-written part"
    (root / "media/images/benign/00009999.png").write_bytes(rng.randbytes(64))
    return "extra junk image"


def read_everything(root: Path) -> None:
    """What users do with an export, in order."""
    export = open_export(root)
    table = export.table()
    export.count("chain == 'benign' & sample_index < 10")
    export.sql("SELECT chain, count(*) FROM samples GROUP BY chain")
    keys = table.column("record_key").to_pylist()
    data = export.torch_dataset(with_heatmap=HEATMAP) if f"{HEATMAP}_path" in export.columns \
        else export.torch_dataset()
    for i in range(len(data)):
        data[i]
    assert len(keys) == len(set(keys)) or True  # duplicates are verify's to report


def names_a_file(error: BaseException, root: Path) -> bool:
    text = str(error)
    return str(root) in text or "record " in text or "manifest.json" in text


def timeout(*_):
    raise TimeoutError(f"a fuzz case ran longer than {SECONDS_PER_CASE} s")


def test_fuzz_reading_random_corruptions(original, tmp_path, capsys):
    outside = tmp_path / "outside.png"
    shutil.copy(original / "media/images/benign/00000000.png", outside)
    outcomes: Counter[str] = Counter()
    failures = []
    previous = signal.signal(signal.SIGALRM, timeout)
    try:
        for seed in range(CASES):
            rng = random.Random(seed)
            root = tmp_path / f"case{seed:03d}"
            shutil.copytree(original, root)
            what = corrupt(root, rng, outside)
            Outside.root, Outside.seen = root.resolve(), []
            signal.alarm(SECONDS_PER_CASE)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        read_everything(root)
                        outcomes["read"] += 1
                    except (DamagedExportError, UnsafePathError, FileNotFoundError) as error:
                        if not names_a_file(error, root):
                            failures.append(f"{seed} {what}: error names no file: {error}")
                        outcomes[type(error).__name__] += 1
                    verify_export(root)
                    if seed % 4 == 0:
                        report = verify_export(root, repair=True)
                        if "not supported" not in str(report):
                            read_everything(root)
                            outcomes["repaired and read"] += 1
                    if seed % 20 == 0:
                        try:
                            open_export(root).fiftyone(rebuild=True)._dataset.delete()
                        except (DamagedExportError, UnsafePathError, FileNotFoundError) as error:
                            if not names_a_file(error, root):
                                failures.append(f"{seed} {what}: FiftyOne error names no file: {error}")
            except (CriterionError, Exception) as error:  # noqa: BLE001 -- any other type fails
                failures.append(f"{seed} {what}: {type(error).__name__}: {str(error)[:300]}")
            finally:
                signal.alarm(0)
            if Outside.seen:
                failures.append(f"{seed} {what}: read outside the export: {Outside.seen}")
            Outside.root = None
            shutil.rmtree(root)
    finally:
        signal.signal(signal.SIGALRM, previous)
    with capsys.disabled():
        print(f"\nfuzz: {CASES} random corruptions: {dict(sorted(outcomes.items()))}; "
              f"{len(failures)} failure(s)")
    assert not failures, "\n".join(failures)
