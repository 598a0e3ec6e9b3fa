"""pack_export / unpack_export: one archive, unpacked anywhere, opens and rebuilds FiftyOne."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest

import armory_datasets
from armory_datasets import open_export
from armory_datasets.sharing import pack_export, unpack_export
from armory_datasets.store import ExportWriter
from test_reading_support import HEATMAP, digits_export


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return open_export(digits_export(tmp_path_factory.mktemp("share") / "run1", n=32,
                                     fiftyone=False, name="digits-sharing"))


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_pack_and_unpack_elsewhere(export, tmp_path, suffix):
    archive = armory_datasets.pack_export(export.path, tmp_path / f"run1{suffix}")
    assert archive.is_file()
    if suffix == ".zip":
        names = zipfile.ZipFile(archive).namelist()
    else:
        names = tarfile.open(archive).getnames()
    assert "run1/manifest.json" in names and all(n.startswith("run1/") for n in names)
    assert not any(n.endswith(".tmp") for n in names)

    unpacked = armory_datasets.unpack_export(archive, tmp_path / "far" / "away")
    assert unpacked.path == tmp_path / "far" / "away"
    assert unpacked.manifest == export.manifest
    assert unpacked.table().equals(export.table())
    image, target, heatmap = unpacked.torch_dataset(with_heatmap=HEATMAP)[0]
    assert image.shape == (1, 32, 32) and heatmap.shape == (32, 32)
    view = unpacked.fiftyone("~correct")
    assert sorted(view.values("record_key")) == sorted(export.table("~correct").column("record_key").to_pylist())
    assert all(p.startswith(str(unpacked.path)) for p in view.values("filepath"))
    view._dataset.delete()


def test_unpack_refuses_a_used_destination_and_unknown_formats(export, tmp_path):
    archive = pack_export(export.path, tmp_path / "run1.tgz")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        unpack_export(archive, tmp_path / "used")
    with pytest.raises(ValueError, match="expected a name ending in .tar.gz, .tgz, .zip"):
        pack_export(export.path, tmp_path / "run1.rar")
    with pytest.raises(FileNotFoundError, match="no such archive"):
        unpack_export(tmp_path / "missing.zip", tmp_path / "d")


def evil_tar(path, name, kind=tarfile.REGTYPE):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        data = b"x" if kind == tarfile.REGTYPE else b""
        info.size = len(data)
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name, kind, message", [
    ("run1/../../evil", tarfile.REGTYPE, "is not a relative path"),
    ("/etc/evil", tarfile.REGTYPE, "is not a relative path"),
    ("run1/link", tarfile.SYMTYPE, "is a link or device"),
    ("run1/notes.txt", tarfile.REGTYPE, "no manifest.json"),
])
def test_unpack_refuses_unsafe_or_foreign_archives(tmp_path, name, kind, message):
    archive = evil_tar(tmp_path / "evil.tar.gz", name, kind)
    with pytest.raises(ValueError, match=message):
        unpack_export(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and not (tmp_path.parent / "evil").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.tar.gz"]  # no staging left behind


def test_pack_refuses_an_incomplete_export_unless_asked(tmp_path):
    writer = ExportWriter(tmp_path / "partial", {"name": "partial"}, fiftyone=False, rows_per_part=1)
    name = writer.register_exporter("manual", "Manual", None, {})
    writer.add(name, "benign", 0, {"target": 1}, batch=0, position=0, image=np.zeros((2, 2, 1), np.uint8))
    writer.end_batch()
    writer.abort()
    with pytest.raises(ValueError, match="is incomplete \\(status 'writing'\\)"):
        pack_export(tmp_path / "partial", tmp_path / "partial.zip")
    archive = pack_export(tmp_path / "partial", tmp_path / "partial.zip", allow_incomplete=True)
    with pytest.warns(UserWarning, match="incomplete"):
        assert unpack_export(archive, tmp_path / "copy").count() == 1
