"""Reading an export directory as untrusted input: confined paths, errors that name the file.

Every path taken from an export (table, manifest, FiftyOne fields) goes through
:func:`inside_export`, the one confinement rule of every read path (``torch_dataset``,
``fiftyone()``, the FiftyOne rebuild, ``pack_export``, the App): a relative path without
``..``, under the expected folder, that still lies inside the export once symlinks are
resolved. A file that cannot be read gives a :class:`DamagedExportError` naming it and
suggesting ``armory-datasets verify``.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> inside_export(root, "media/images/benign/00000001.png", "record 'benign/1' image_path").name
    '00000001.png'
    >>> inside_export(root, "../outside.png", "record 'benign/1' image_path")
    Traceback (most recent call last):
    ...
    armory_datasets.untrusted.UnsafePathError: record 'benign/1' image_path: '../outside.png' leaves the export directory; expected a relative path inside it, under media/
"""

from __future__ import annotations

import os
from collections.abc import Container, Iterable
from pathlib import Path

__all__ = ["DamagedExportError", "UnsafePathError", "damaged", "heatmap_fields", "inside_export"]


class UnsafePathError(ValueError):
    """A path taken from an export points outside it (absolute, ``..``, or through a symlink).

    Example:
        >>> str(UnsafePathError("record 'a/1' image_path: '/etc/passwd' leaves the export"))
        "record 'a/1' image_path: '/etc/passwd' leaves the export"
    """


class DamagedExportError(ValueError):
    """A file of an export cannot be read as what it should be; ``path`` names it.

    Example:
        >>> str(damaged(Path("/e/table/part-00000.parquet"), "truncated", Path("/e")))
        '/e/table/part-00000.parquet: truncated; run `armory-datasets verify /e` to list the damage and `--repair` to recover'
    """

    def __init__(self, message: str, path: Path | None = None, cause: str | None = None) -> None:
        self.path, self.cause = path, cause or message
        super().__init__(message)


def damaged(path: Path, cause: object, export_dir: Path) -> DamagedExportError:
    """A :class:`DamagedExportError` naming ``path`` and ``cause``, suggesting ``verify``.

    Example:
        >>> damaged(Path("/e/manifest.json"), "empty file", Path("/e")).path
        PosixPath('/e/manifest.json')
    """
    cause = " ".join(str(cause).split()) or type(cause).__name__
    return DamagedExportError(
        f"{path}: {cause}; run `armory-datasets verify {export_dir}` to list the damage and "
        f"`--repair` to recover", path, cause)


def inside_export(root: Path, relative: object, what: str, under: str = "media/") -> Path:
    """The absolute path of ``relative`` (a path read from the export at ``root``), confined.

    ``what`` names the record and field in the error; ``under`` is the folder the path
    must start with. Raises :class:`UnsafePathError` for anything else: not a string,
    empty, absolute, backslashes, ``..`` or ``.`` parts, NUL bytes, another folder, or a
    symlink that resolves outside ``root``.

    Example:
        >>> inside_export(Path("/e"), "media/heatmaps/../..", "record 'a/1' x_path")
        Traceback (most recent call last):
        ...
        armory_datasets.untrusted.UnsafePathError: record 'a/1' x_path: 'media/heatmaps/../..' leaves the export directory; expected a relative path inside it, under media/
    """
    return Path(Confinement(root)(relative, what, under))


class Confinement:
    """:func:`inside_export` for the many paths of one export, as strings: each folder is
    resolved once, then a path costs one ``lstat`` (is its file a symlink?), not one per
    folder on the way down from ``/``.

    Example:
        >>> confine = Confinement(Path("/e"))
        >>> confine("media/images/benign/00000000.png", "record 'benign/0' image_path")
        '/e/media/images/benign/00000000.png'
    """

    def __init__(self, root: str | Path) -> None:
        self.root = os.path.realpath(root)  # strings, not pathlib: this runs once per record and map
        self._inside = self.root.rstrip("/") + "/"
        self._folders: dict[str, str] = {}

    def __call__(self, relative: object, what: str, under: str = "media/") -> str:
        expected = f"expected a relative path inside it, under {under}"
        if not isinstance(relative, str) or not relative:
            raise UnsafePathError(f"{what}: got {relative!r}; {expected}")
        parts = relative.split("/")
        if ("\\" in relative or "\x00" in relative or relative.startswith("/")
                or any(p in ("", ".", "..") for p in parts)):
            raise UnsafePathError(f"{what}: {relative!r} leaves the export directory; {expected}")
        if not relative.startswith(under):
            raise UnsafePathError(f"{what}: {relative!r} is not under {under}; {expected}")
        folder, _, name = relative.rpartition("/")
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = os.path.realpath(os.path.join(self.root, folder))
        real = os.path.join(real_folder, name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        if not real.startswith(self._inside):
            raise UnsafePathError(f"{what}: {relative!r} resolves to {real}, outside the "
                                  f"export directory (a symlink?); {expected}")
        return os.path.join(self.root, relative)


def heatmap_fields(names: Iterable[str], vocabulary: Container[str] = ()) -> list[str]:
    """Saliency fields among column ``names``: ``{field}_path`` beside ``{field}_min`` and
    ``{field}_max`` (as saliency exporters write them), never a column by its name alone
    (a metadata column ``source_path`` is not a media field).

    Example:
        >>> heatmap_fields(["image_path", "source_path", "ig_path", "ig_min", "ig_max"], ["image_path"])
        ['ig']
    """
    names = list(names)
    present = set(names)
    return [name[: -len("_path")] for name in names
            if name.endswith("_path") and name not in vocabulary
            and name[: -len("_path")] not in present
            and {f"{name[: -len('_path')]}_min", f"{name[: -len('_path')]}_max"} <= present]
