"""Issue 12: an export directory is untrusted input. One test per measured defect.

Each test damages or doctors a copy of a real digits export the way a hostile user
(or a full disk, a killed process, a partial sync) would, and checks the reader ends in
an error naming the file or the record and path, never reading outside the export.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from armory_datasets import open_export
from armory_datasets.cli import main
from armory_datasets.sharing import UnpackLimitError, UnpackLimits, pack_export, unpack_export
from armory_datasets.store.manifest import UnsupportedVersionError
from armory_datasets.untrusted import DamagedExportError, UnsafePathError
from test_reading_support import HEATMAP, digits_export

PART = "table/part-00000.parquet"


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return digits_export(tmp_path_factory.mktemp("untrusted") / "run1", n=32, fiftyone=False,
                         name="digits-untrusted")


@pytest.fixture
def copy(original, tmp_path) -> Path:
    path = tmp_path / "copy"
    shutil.copytree(original, path, symlinks=True)
    return path


def rewrite_column(export_dir: Path, column: str, value) -> None:
    """Set ``column`` of the first record of the first part to ``value`` (schema kept)."""
    path = export_dir / PART
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[0] = value
    index = table.schema.get_field_index(column)
    table = table.set_column(index, table.schema.field(index), pa.array(values, pa.string()))
    pq.write_table(table, path)


def add_column(export_dir: Path, column: str, value: str) -> None:
    path = export_dir / PART
    table = pq.read_table(path)
    table = table.append_column(column, pa.array([value] * table.num_rows))
    pq.write_table(table, path)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    manifest["dynamic_columns"].append({"name": column, "arrow_type": "string"})
    (export_dir / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(export_dir: Path, **changes) -> None:
    manifest = json.loads((export_dir / "manifest.json").read_text())
    manifest.update(changes)
    (export_dir / "manifest.json").write_text(json.dumps(manifest))


def first_key(export_dir: Path) -> str:
    return pq.read_table(export_dir / PART).column("record_key")[0].as_py()


# ------------------------------------------------------------------ path confinement

@pytest.mark.parametrize("hostile", ["../outside.png", "/etc/passwd", "media/images/../../x.png",
                                     "table/part-00000.parquet", ""])
def test_torch_dataset_refuses_image_paths_outside_the_export(copy, hostile):
    (copy.parent / "outside.png").write_bytes((copy / "media/images/benign/00000000.png").read_bytes())
    rewrite_column(copy, "image_path", hostile)
    with pytest.raises(UnsafePathError, match=f"record {first_key(copy)!r} image_path"):
        open_export(copy).torch_dataset()


def test_torch_dataset_refuses_a_symlinked_image_leading_outside(copy):
    image = copy / "media/images/benign/00000000.png"
    image.unlink()
    image.symlink_to("/etc/passwd")
    with pytest.raises(UnsafePathError, match="resolves to /etc/passwd, outside the export"):
        open_export(copy).torch_dataset()


def test_heatmap_paths_must_stay_in_their_folder(copy):
    rewrite_column(copy, f"{HEATMAP}_path", "media/heatmaps/../..")
    with pytest.raises(UnsafePathError, match=f"{HEATMAP}_path: 'media/heatmaps/../..' leaves"):
        open_export(copy).torch_dataset(with_heatmap=HEATMAP)
    rewrite_column(copy, f"{HEATMAP}_path", "media/images/benign/00000000.png")
    with pytest.raises(UnsafePathError, match=f"is not under media/heatmaps/{HEATMAP}/"):
        open_export(copy).torch_dataset(with_heatmap=HEATMAP)


@pytest.mark.parametrize("column, hostile", [("image_path", "/etc/passwd"),
                                             ("image_path", "../../../../etc/passwd"),
                                             (f"{HEATMAP}_path", "media/heatmaps/../../../x.tif")])
def test_fiftyone_rebuild_refuses_paths_outside_the_export(copy, column, hostile):
    rewrite_column(copy, column, hostile)
    with pytest.raises(UnsafePathError, match=f"record {first_key(copy)!r} {column}"):
        open_export(copy).fiftyone()


@pytest.mark.parametrize("format", ["imagefolder", "hf"])
def test_convert_refuses_image_paths_outside_the_export(copy, tmp_path, format):
    rewrite_column(copy, "image_path", "../outside.png")
    (copy.parent / "outside.png").write_bytes((copy / "media/images/benign/00000000.png").read_bytes())
    out = tmp_path / "converted"
    with pytest.raises(UnsafePathError, match=f"record {first_key(copy)!r} image_path"):
        open_export(copy).convert(out, format)
    assert not out.exists()


def test_a_metadata_column_never_becomes_a_heatmap_by_its_name(copy):
    add_column(copy, "source_path", "media/heatmaps/../../../etc/passwd")
    view = open_export(copy).fiftyone()
    try:
        schema = view.get_field_schema()
        assert type(schema["source_path"]).__name__ == "StringField"
        assert "source" not in schema
        assert set(view.values("source_path")) - {None} == {"media/heatmaps/../../../etc/passwd"}
    finally:
        view._dataset.delete()


# ------------------------------------------------------------------ packing

@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_pack_refuses_symlinks_naming_them(copy, tmp_path, suffix):
    link = copy / "media/images/benign/00000000.png"
    link.unlink()
    link.symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match=f"{link}: is a symlink .*never follows links"):
        pack_export(copy, tmp_path / f"out{suffix}")
    assert not list(tmp_path.glob("out*"))
    link.unlink()
    (copy / "media/images/linked").symlink_to(copy.parent, target_is_directory=True)
    with pytest.raises(ValueError, match="is a symlink to a folder"):
        pack_export(copy, tmp_path / f"out{suffix}")


def bomb(path: Path, size: int, manifest: bytes) -> Path:
    """A 300 KB .tar.gz that extracts to ``size`` bytes of zeros beside a manifest."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("run1/manifest.json", manifest),):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("run1/media/images/benign/00000000.png")
        info.size = size

        class Zeros(io.RawIOBase):
            left = size

            def readinto(self, buffer):
                n = min(len(buffer), self.left)
                buffer[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(info, Zeros())
    return path


def test_unpack_stops_an_archive_bomb_and_leaves_dest_as_it_was(original, tmp_path):
    manifest = (original / "manifest.json").read_bytes()
    archive = bomb(tmp_path / "bomb.tar.gz", 314 * 2**20, manifest)
    assert archive.stat().st_size < 400_000
    (tmp_path / "empty").mkdir()
    for dest in (tmp_path / "empty", tmp_path / "new" / "deep" / "run1"):
        with pytest.raises(UnpackLimitError, match="times its size .*max_ratio"):
            unpack_export(archive, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.tar.gz", "empty"]
    assert not any((tmp_path / "empty").iterdir())
    with pytest.raises(UnpackLimitError, match="more than 1000 bytes"):
        unpack_export(archive, tmp_path / "x", UnpackLimits(max_bytes=1000))
    with pytest.raises(UnpackLimitError, match="more than 1 files"):
        unpack_export(archive, tmp_path / "x", UnpackLimits(max_files=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.tar.gz", "empty"]


def test_unpack_of_an_invalid_export_leaves_dest_as_it_was(original, tmp_path):
    archive = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("run1/manifest.json", (original / "manifest.json").read_bytes())
    (tmp_path / "empty").mkdir()
    for dest in (tmp_path / "empty", tmp_path / "a" / "b"):
        with pytest.raises(FileNotFoundError, match="table parts .* are missing"):
            unpack_export(archive, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.zip", "empty"]
    assert not any((tmp_path / "empty").iterdir())


def test_real_exports_unpack_within_the_default_limits(original, tmp_path):
    for suffix in (".zip", ".tar.gz"):
        archive = pack_export(original, tmp_path / f"run1{suffix}")
        files = sum(len(f) for _, _, f in os.walk(original))
        size = sum(p.stat().st_size for p in original.rglob("*") if p.is_file())
        print(f"{suffix}: {files} files, {size} bytes, ratio {size / archive.stat().st_size:.1f}")
        assert size / archive.stat().st_size < UnpackLimits().max_ratio / 10
        assert unpack_export(archive, tmp_path / f"unpacked{suffix}").count() == 64


# ------------------------------------------------------------------ damaged files

def test_a_truncated_part_names_the_file_and_exit_code_is_1(copy, capsys):
    part = copy / PART
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(DamagedExportError, match=f"{part}: cannot be read as Parquet.*verify"):
        open_export(copy)
    assert main(["query", str(copy), "--where", "chain == 'benign'"]) == 1
    error = capsys.readouterr().err
    assert str(part) in error and "armory-datasets verify" in error


@pytest.mark.parametrize("content", [b"", b'{"manifest_version": 1, "tab', b"\xff\xfe\x00",
                                     b"[]", b"null"])
def test_a_truncated_or_empty_manifest_names_its_path(copy, content, capsys):
    (copy / "manifest.json").write_bytes(content)
    with pytest.raises(DamagedExportError, match=f"{copy / 'manifest.json'}: .*verify"):
        open_export(copy)
    assert main(["info", str(copy)]) == 1
    assert str(copy / "manifest.json") in capsys.readouterr().err


@pytest.mark.parametrize("key", ["table_version", "manifest_version"])
def test_unknown_versions_are_refused_with_found_and_supported(copy, key):
    edit_manifest(copy, **{key: 3})
    with pytest.raises(UnsupportedVersionError, match=f"{key} 3 is not supported; this release "
                                                      f"reads {key} 1"):
        open_export(copy)


def test_a_part_of_an_unknown_table_version_is_refused(copy):
    table = pq.read_table(copy / PART)
    pq.write_table(table.replace_schema_metadata({b"armory_datasets.table": b"9"}), copy / PART)
    with pytest.raises(DamagedExportError, match="table version '9' is not supported"):
        open_export(copy)


def test_a_stray_part_is_never_read(copy, original):
    rows = open_export(original).count()
    stray = pq.read_table(copy / PART).slice(0, 10)
    stray = stray.set_column(0, "export_id", pa.array(["20990101T000000Z-deadbeef"] * 10))
    pq.write_table(stray, copy / "table/part-00099.parquet")
    export = open_export(copy)
    assert export.count() == rows == export.table().num_rows
    assert export.sql("SELECT count(DISTINCT export_id) AS n FROM samples").column("n")[0].as_py() == 1


def test_zeroed_bytes_in_a_part_name_the_file(copy):
    part = copy / PART
    data = bytearray(part.read_bytes())
    data[4: len(data) // 2] = bytes(len(data) // 2 - 4)
    part.write_bytes(bytes(data))
    with pytest.raises(DamagedExportError, match=f"{part}: cannot be read as Parquet"):
        open_export(copy).table()
    with pytest.raises(DamagedExportError, match=str(part)):
        open_export(copy).count("~correct")


def test_a_truncated_png_names_the_file(copy):
    image = copy / "media/images/benign/00000000.png"
    image.write_bytes(image.read_bytes()[:60])
    data = open_export(copy).torch_dataset("chains(['benign']) & sample_index == 0")
    with pytest.raises(DamagedExportError, match=f"{image}: cannot be read as a PNG image.*verify"):
        data[0]


def test_a_truncated_heatmap_names_the_file(copy):
    heatmap = next((copy / f"media/heatmaps/{HEATMAP}/benign").glob("00000000*"))
    heatmap.write_bytes(heatmap.read_bytes()[:40])
    data = open_export(copy).torch_dataset("chains(['benign']) & sample_index == 0",
                                           with_heatmap=HEATMAP)
    with pytest.raises(DamagedExportError, match=f"{heatmap}: cannot be read"):
        data[0]
