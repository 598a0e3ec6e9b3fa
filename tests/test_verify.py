"""`verify` and `verify --repair` on every damage type of issue 12, then a resume.

Each case damages a copy of a real digits export, checks ``verify`` names the damaged
file with a fix (CLI exit code 1), repairs it (nothing deleted: the damaged files are
under quarantine/), checks the export reads and the lost record keys are reported, then
runs the export again into the directory: it resumes, recomputes exactly the lost
records, and ends with every record once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from armory_datasets import open_export
from armory_datasets.cli import main
from armory_datasets.verify import verify_export
from test_reading_support import HEATMAP, digits_export

NAME = "digits-untrusted"
RECORDS = 64


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return digits_export(tmp_path_factory.mktemp("verify") / "run1", n=32, fiftyone=False, name=NAME)


def part_keys(path: Path) -> list[str]:
    return pq.read_table(path).column("record_key").to_pylist()


def truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


def zero(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4: len(data) // 2] = bytes(len(data) // 2 - 4)
    path.write_bytes(bytes(data))


def stray(root: Path) -> None:
    table = pq.read_table(root / "table/part-00000.parquet").slice(0, 10)
    table = table.set_column(0, "export_id", pa.array(["20990101T000000Z-deadbeef"] * 10))
    pq.write_table(table, root / "table/part-00099.parquet")
    (root / "table/part-00100.parquet.tmp").write_bytes(b"half written")


def hostile_path(root: Path) -> None:
    part = root / "table/part-00001.parquet"
    table = pq.read_table(part)
    paths = table.column("image_path").to_pylist()
    paths[0] = "../outside.png"
    table = table.set_column(table.schema.get_field_index("image_path"), "image_path",
                             pa.array(paths))
    pq.write_table(table, part)


def duplicate(root: Path) -> None:
    part = root / "table/part-00001.parquet"
    table = pq.read_table(part)
    pq.write_table(pa.concat_tables([table, table.slice(0, 3)]), part)


def foreign_listed(root: Path) -> None:
    stray(root)
    (root / "table/part-00100.parquet.tmp").unlink()
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["table"]["parts"].append("part-00099.parquet")
    (root / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {
    # name: (damage, the file verify must name, records lost: all of part 0 / given keys)
    "truncated part": (lambda r: truncate(r / "table/part-00000.parquet"), "table/part-00000.parquet", "part0"),
    "zeroed part": (lambda r: zero(r / "table/part-00000.parquet"), "table/part-00000.parquet", "part0"),
    "missing part": (lambda r: (r / "table/part-00000.parquet").unlink(), "table/part-00000.parquet", "part0"),
    "stray parts": (stray, "table/part-00099.parquet", []),
    "foreign part listed": (foreign_listed, "table/part-00099.parquet", []),
    "truncated png": (lambda r: truncate(r / "media/images/fgsm/00000003.png", 60),
                      "media/images/fgsm/00000003.png", ["fgsm/3"]),
    "missing png": (lambda r: (r / "media/images/benign/00000020.png").unlink(),
                    "media/images/benign/00000020.png", ["benign/20"]),
    "truncated heatmap": (lambda r: truncate(heatmap_5(r), 40), "heatmap of benign/5", ["benign/5"]),
    "hostile image path": (hostile_path, "table", "first of part1"),
    "duplicate records": (duplicate, "table/part-00001.parquet", []),
    "truncated manifest": (lambda r: truncate(r / "manifest.json", 700), "manifest.json", []),
    "empty manifest": (lambda r: (r / "manifest.json").write_bytes(b""), "manifest.json", []),
    "wrong counts": (lambda r: _edit_counts(r), "manifest.json", []),
}


def heatmap_5(root: Path) -> Path:
    return next((root / f"media/heatmaps/{HEATMAP}/benign").glob("00000005*"))


def _edit_counts(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["counts"]["records"] = 350
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_verify_names_the_damage_and_repair_then_resume_restores_it(original, tmp_path, case, capsys):
    damage, named, lost = DAMAGE[case]
    root = tmp_path / NAME  # a manifest rebuilt from nothing takes the folder's name
    shutil.copytree(original, root)
    if lost == "part0":
        lost = part_keys(root / "table/part-00000.parquet")
    elif lost == "first of part1":
        lost = part_keys(root / "table/part-00001.parquet")[:1]
    damage(root)
    if named == "heatmap of benign/5":
        named = str(heatmap_5(root).relative_to(root))
    files_before = {p.relative_to(root) for p in root.rglob("*") if p.is_file()}

    report = verify_export(root)
    assert not report.ok and any(p.path == named for p in report.problems), str(report)
    assert all(p.fix for p in report.problems)
    assert main(["verify", str(root)]) == 1
    assert named in capsys.readouterr().out

    repaired = verify_export(root, repair=True)
    assert repaired.ok and sorted(repaired.lost_records) == sorted(lost), str(repaired)
    files_after = {p.relative_to(root) for p in root.rglob("*") if p.is_file()}
    moved = {Path(q).relative_to("quarantine") for q in repaired.quarantined}
    assert files_before - files_after <= moved  # nothing deleted: only moved to quarantine/
    again = verify_export(root)
    assert again.ok and not [p for p in again.problems if "rebuilt" not in p.problem], str(again)
    export = open_export(root) if not lost else _open_incomplete(root)
    assert export.count() == RECORDS - len(lost)
    if not lost and export.status == "complete":
        return  # nothing to recompute: a run into the directory is refused as complete

    parts_before = {p.name for p in (root / "table").iterdir()}
    digits_export(root, n=32, fiftyone=False, name=NAME)
    export = open_export(root)
    keys = export.table(columns=["record_key"]).column("record_key").to_pylist()
    assert len(keys) == len(set(keys)) == RECORDS
    recomputed = [k for p in export.parts if p.name not in parts_before for k in part_keys(p)]
    assert sorted(recomputed) == sorted(lost)
    assert verify_export(root).problems == []


def _open_incomplete(root: Path):
    with pytest.warns(UserWarning, match="incomplete"):
        return open_export(root)


def test_an_unknown_version_is_reported_not_repaired(original, tmp_path):
    root = tmp_path / "v2"
    shutil.copytree(original, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["table_version"] = 3
    (root / "manifest.json").write_text(json.dumps(manifest))
    report = verify_export(root, repair=True)
    assert not report.ok and "table_version 3 is not supported" in str(report)
    assert json.loads((root / "manifest.json").read_text())["table_version"] == 3
    assert not (root / "quarantine").exists()


def test_verify_of_a_file_names_the_export_directory(original):
    with pytest.raises(NotADirectoryError, match=f"a file \\(the export is its directory, {original}\\)"):
        verify_export(original / "manifest.json")


def test_verify_json_and_a_clean_export(original, capsys):
    assert main(["verify", str(original), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["records"] == RECORDS and report["problems"] == []
    assert report["status"] == "complete"
    assert open_export(original).verify().ok


def test_an_incomplete_export_verifies_and_says_it_is_incomplete(tmp_path, capsys):
    """A killed export is not damaged, but '0 problem(s)' alone would read as finished."""
    import numpy as np

    from armory_datasets.store import ExportWriter

    writer = ExportWriter(tmp_path / "killed", {"name": "killed"}, fiftyone=False)
    writer.add_records("clf", "benign", [0, 1], {"target": [1, 2]}, batch=0, positions=[0, 1],
                       images=np.zeros((2, 2, 2, 3), np.uint8))
    writer.end_batch()
    writer.abort()  # as a killed process leaves it: its finished batches kept, status "writing"
    report = verify_export(tmp_path / "killed")
    assert report.ok and report.status == "writing" and report.records == 2
    assert str(report).splitlines() == [
        f"{tmp_path / 'killed'}: 2 readable records, 0 problem(s); incomplete (status 'writing')",
        "  run the export again into this directory to finish it"]
    assert main(["verify", str(tmp_path / "killed"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "writing"


def test_a_committed_multi_writer_export_verifies_and_its_damage_is_still_found(tmp_path):
    """Writer-named parts and the writers' journals are part of a committed export, not strays."""
    from armory_datasets.store.commit import commit_export
    from multiwriter_support import write_shard

    export_dir = tmp_path / "multi"
    write_shard(export_dir, "w0", [0, 2])
    write_shard(export_dir, "w1", [1, 3])
    commit_export(export_dir)
    parts = sorted(p.name for p in (export_dir / "table").glob("part-*.parquet"))
    assert parts and all(p.startswith(("part-w0-", "part-w1-")) for p in parts)
    report = verify_export(export_dir)
    assert report.ok, str(report)
    assert report.records == open_export(export_dir).table().num_rows > 0

    (export_dir / "table" / "part-w9-00000.parquet").write_bytes(b"stray")
    (export_dir / "table" / parts[0]).write_bytes(b"PAR1 truncated")
    damaged = verify_export(export_dir)
    found = {Path(p.path).name for p in damaged.problems}
    assert not damaged.ok and {"part-w9-00000.parquet", parts[0]} <= found, str(damaged)


def test_repair_rebuilds_a_lost_manifest_of_a_multi_writer_export_from_its_writer_parts(tmp_path):
    from armory_datasets.store.commit import commit_export
    from multiwriter_support import write_shard

    export_dir = tmp_path / "multi"
    write_shard(export_dir, "w0", [0, 2])
    write_shard(export_dir, "w1", [1, 3])
    commit_export(export_dir)
    before = open_export(export_dir).table().num_rows
    (export_dir / "manifest.json").unlink()
    report = verify_export(export_dir, repair=True)
    assert report.repaired and not report.lost_records, str(report)
    assert open_export(export_dir).table().num_rows == before == 40
