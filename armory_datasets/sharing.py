"""Share an export as one archive: ``pack_export(path, archive)``, ``unpack_export(archive, dest)``.

The archive (``.tar.gz``/``.tgz`` or ``.zip``, by its suffix) holds one top-level folder
named after the export directory with ``manifest.json``, the finished ``table/`` parts
and ``media/``, all at relative paths: ``tar xzf`` or ``unzip`` anywhere gives a
working export, and ``open_export`` rebuilds its FiftyOne dataset there. Unpacking
refuses absolute paths, ``..``, links and devices, and extracts atomically (to a
temporary sibling of ``dest``, then renamed).

Example:
    >>> from armory_datasets.demo.tiny import tiny_export
    >>> pack_export(tiny_export(), "run1.tar.gz")
    PosixPath('run1.tar.gz')
    >>> unpack_export("run1.tar.gz", "elsewhere/run1").fiftyone().count()
    16
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from armory_datasets.reading import Export, open_export
from armory_datasets.store.hf_card import CARD_FILE
from armory_datasets.store.manifest import MANIFEST_FILE
from armory_datasets.store.media import TMP_SUFFIX

__all__ = ["pack_export", "unpack_export"]

FORMATS = {".tar.gz": "tar", ".tgz": "tar", ".zip": "zip"}


def archive_format(archive: str | Path) -> str:
    """``"tar"`` or ``"zip"`` from the archive's name.

    Example:
        >>> archive_format("run1.tgz")
        'tar'
    """
    name = Path(archive).name.lower()
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise ValueError(f"archive: {str(archive)!r}; expected a name ending in "
                     f"{', '.join(FORMATS)}")


def _members(export: Export) -> Iterator[Path]:
    """The export's own files, relative to its directory (no half-written ``.tmp`` files)."""
    yield Path(MANIFEST_FILE)
    if (export.path / CARD_FILE).is_file():
        yield Path(CARD_FILE)
    for part in export.parts:
        yield part.relative_to(export.path)
    media = export.path / "media"
    for root, dirs, files in os.walk(media):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(TMP_SUFFIX):
                yield (Path(root) / name).relative_to(export.path)


def pack_export(path: str | Path, archive: str | Path, allow_incomplete: bool = False) -> Path:
    """Write the export at ``path`` into ``archive`` (.tar.gz, .tgz or .zip); return its path.

    An incomplete export (status "writing") is refused unless ``allow_incomplete``.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> pack_export(tiny_export(), "run1.zip")
        PosixPath('run1.zip')
    """
    kind = archive_format(archive)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export = open_export(path)
    if export.status != "complete" and not allow_incomplete:
        raise ValueError(f"{path}: export {export.export_id} is incomplete (status "
                         f"{export.status!r}); finish it, or pass allow_incomplete=True")
    archive = Path(archive)
    top = PurePosixPath(export.path.name)
    tmp = archive.with_name(archive.name + TMP_SUFFIX)
    archive.parent.mkdir(parents=True, exist_ok=True)
    if kind == "tar":
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            for member in _members(export):
                tar.add(export.path / member, arcname=str(top / member.as_posix()), recursive=False)
    else:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zipped:
            for member in _members(export):
                zipped.write(export.path / member, str(top / member.as_posix()))
    os.replace(tmp, archive)
    return archive


class _Names:
    """Checks member names: relative, without ``..``, all inside one top-level folder."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.top: str | None = None

    def inside(self, name: str) -> PurePosixPath | None:
        """The member's path below the top-level folder (None for the folder itself)."""
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError(f"{self.archive}: member {name!r} is not a relative path; "
                             f"expected an archive written by pack_export")
        if self.top is None:
            self.top = path.parts[0]
        if path.parts[0] != self.top:
            raise ValueError(f"{self.archive}: members {self.top!r} and {name!r} are in different "
                             f"top-level folders; expected one folder holding the export")
        return PurePosixPath(*path.parts[1:]) if len(path.parts) > 1 else None


def unpack_export(archive: str | Path, dest: str | Path) -> Export:
    """Extract an archive made by :func:`pack_export` so that ``dest`` is the export; open it.

    ``dest`` must not exist, or be an empty directory.

    Example:
        >>> from armory_datasets.demo.tiny import tiny_export
        >>> archive = pack_export(tiny_export(), "run1.tar.gz")
        >>> unpack_export(archive, "elsewhere/run1").manifest["status"]
        'complete'
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_format(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: no such archive")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest}: exists and is not an empty directory; expected a new "
                              f"destination for the export")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        if kind == "tar":
            _extract_tar(archive, staging)
        else:
            _extract_zip(archive, staging)
        if not (staging / MANIFEST_FILE).is_file():
            raise ValueError(f"{archive}: no {MANIFEST_FILE} in its top-level folder; expected an "
                             f"archive written by pack_export")
        staging.chmod(0o755)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return open_export(dest)


def _extract_tar(archive: Path, staging: Path) -> None:
    names = _Names(archive)
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            target = names.inside(member.name)
            if member.isdir() or target is None:
                continue
            if not member.isfile():
                raise ValueError(f"{archive}: member {member.name!r} is a link or device; "
                                 f"expected regular files only")
            out = staging / target
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(out, "wb") as sink:
                shutil.copyfileobj(source, sink)


def _extract_zip(archive: Path, staging: Path) -> None:
    names = _Names(archive)
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = names.inside(info.filename)
            if info.is_dir() or target is None:
                continue
            if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                raise ValueError(f"{archive}: member {info.filename!r} is a link or device; "
                                 f"expected regular files only")
            out = staging / target
            out.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as source, open(out, "wb") as sink:
                shutil.copyfileobj(source, sink)
