"""Share an export as one archive: ``pack_export(path, archive)``, ``unpack_export(archive, dest)``.

The archive (``.tar.gz``/``.tgz`` or ``.zip``, by its suffix) holds one top-level folder
named after the export directory with ``manifest.json``, the finished ``table/`` parts
and ``media/``, all at relative paths: ``tar xzf`` or ``unzip`` anywhere gives a
working export, and ``open_export`` rebuilds its FiftyOne dataset there.

Packing never follows a symlink: it refuses one, naming it. Unpacking treats the archive
as untrusted: it refuses absolute paths, ``..``, links and devices, stops at
:class:`UnpackLimits` (total size, file count, compression ratio; counted on the bytes
actually extracted, not on the archive's headers), opens the export before moving it
into place, and on any failure leaves ``dest`` (and its parents) as they were.

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
import stat
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from armory_datasets.reading import Export, open_export
from armory_datasets.store.hf_card import CARD_FILE
from armory_datasets.store.manifest import MANIFEST_FILE
from armory_datasets.store.media import TMP_SUFFIX

__all__ = ["UnpackLimitError", "UnpackLimits", "pack_export", "unpack_export"]

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


@dataclass(frozen=True)
class UnpackLimits:
    """What :func:`unpack_export` extracts at most; raise them for exports beyond these.

    The defaults fit real exports with room to spare (PNGs and compressed Parquet barely
    compress; a digits export packs at a ratio of about 3) and stop archive bombs.

    Example:
        >>> UnpackLimits(max_bytes=2**40).max_files
        1000000
    """

    max_bytes: int = 256 * 2**30
    """Total bytes extracted (256 GiB)."""
    max_files: int = 1_000_000
    """Number of files."""
    max_ratio: float = 100.0
    """Extracted bytes per byte of the archive (checked once 16 MiB are extracted)."""


class UnpackLimitError(ValueError):
    """The archive goes beyond :class:`UnpackLimits`; nothing was left at the destination."""


_RATIO_GRACE = 16 * 2**20  # tiny archives of tiny exports may compress far better


def _regular_file(path: Path, export: Export) -> Path:
    """``path`` if it is a regular file; a symlink or device is refused, naming it."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        raise ValueError(f"{path}: is a symlink (to {os.readlink(path)!r}); pack_export never "
                         f"follows links: replace it with the file itself")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: is not a regular file; expected only files in the export")
    return path.relative_to(export.path)


def _members(export: Export) -> Iterator[Path]:
    """The export's own files, relative to its directory (no half-written ``.tmp`` files)."""
    yield _regular_file(export.path / MANIFEST_FILE, export)
    if (export.path / CARD_FILE).is_file():
        yield _regular_file(export.path / CARD_FILE, export)
    for part in export.parts:
        yield _regular_file(part, export)
    media = export.path / "media"
    if media.is_symlink():
        raise ValueError(f"{media}: is a symlink; pack_export never follows links")
    for root, dirs, files in os.walk(media):
        dirs.sort()
        for name in dirs:
            if (Path(root) / name).is_symlink():
                raise ValueError(f"{Path(root) / name}: is a symlink to a folder; pack_export "
                                 f"never follows links: replace it with the folder itself")
        for name in sorted(files):
            if not name.endswith(TMP_SUFFIX):
                yield _regular_file(Path(root) / name, export)


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
    members = list(_members(export))  # every link refused before anything is written
    if kind == "tar":
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            for member in members:
                tar.add(export.path / member, arcname=str(top / member.as_posix()), recursive=False)
    else:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zipped:
            for member in members:
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


def unpack_export(archive: str | Path, dest: str | Path, limits: UnpackLimits | None = None) -> Export:
    """Extract an archive made by :func:`pack_export` so that ``dest`` is the export; open it.

    ``dest`` must not exist, or be an empty directory. ``limits`` bounds what is
    extracted (default :class:`UnpackLimits`); on any failure ``dest`` is left as it was.

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
    created = [p for p in [*reversed(dest.parent.parents), dest.parent] if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    budget = _Budget(archive, limits or UnpackLimits())
    moved = False
    try:
        try:
            if kind == "tar":
                _extract_tar(archive, staging, budget)
            else:
                _extract_zip(archive, staging, budget)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise ValueError(f"{archive}: not a readable {kind} archive ({error}); expected an "
                             f"archive written by pack_export, copied whole") from None
        except FileExistsError:
            raise ValueError(f"{archive}: holds a file twice; expected an archive written by "
                             f"pack_export") from None
        if not (staging / MANIFEST_FILE).is_file():
            raise ValueError(f"{archive}: no {MANIFEST_FILE} in its top-level folder; expected an "
                             f"archive written by pack_export")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            open_export(staging)  # a broken export never reaches dest
        staging.chmod(0o755)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
        moved = True
        return open_export(dest)
    except BaseException:
        if moved:
            shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


class _Budget:
    """Counts the files and bytes extracted against the limits."""

    def __init__(self, archive: Path, limits: UnpackLimits) -> None:
        self.archive, self.limits = archive, limits
        self.size = max(archive.stat().st_size, 1)
        self.files = self.bytes = 0

    def file(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise UnpackLimitError(f"{self.archive}: holds more than {self.limits.max_files} "
                                   f"files; pass limits=UnpackLimits(max_files=...) to allow more")

    def copy(self, source: IO[bytes], sink: IO[bytes]) -> None:
        while chunk := source.read(2**20):
            self.bytes += len(chunk)
            if self.bytes > self.limits.max_bytes:
                raise UnpackLimitError(
                    f"{self.archive}: extracts to more than {self.limits.max_bytes} bytes; pass "
                    f"limits=UnpackLimits(max_bytes=...) to allow more")
            if self.bytes > _RATIO_GRACE and self.bytes > self.limits.max_ratio * self.size:
                raise UnpackLimitError(
                    f"{self.archive}: extracts to more than {self.limits.max_ratio:g} times its "
                    f"size ({self.size} bytes), like an archive bomb; pass "
                    f"limits=UnpackLimits(max_ratio=...) if it is a real export")
            sink.write(chunk)


def _extract_tar(archive: Path, staging: Path, budget: _Budget) -> None:
    names = _Names(archive)
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            target = names.inside(member.name)
            if member.isdir() or target is None:
                continue
            if not member.isfile():
                raise ValueError(f"{archive}: member {member.name!r} is a link or device; "
                                 f"expected regular files only")
            budget.file()
            out = staging / target
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(out, "xb") as sink:
                budget.copy(source, sink)


def _extract_zip(archive: Path, staging: Path, budget: _Budget) -> None:
    names = _Names(archive)
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            target = names.inside(info.filename)
            if info.is_dir() or target is None:
                continue
            if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                raise ValueError(f"{archive}: member {info.filename!r} is a link or device; "
                                 f"expected regular files only")
            budget.file()
            out = staging / target
            out.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as source, open(out, "xb") as sink:
                budget.copy(source, sink)
