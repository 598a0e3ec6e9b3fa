"""Overwriting an export atomically, and disk-full errors that say so.

``overwrite=True`` writes the new export into a hidden sibling of the directory
(:class:`Replacement`) and swaps the two only when the new table is finished: the old
export is moved aside (files that are not the export's own, e.g. ``quarantine/`` or a
user's notes, move back into the new directory), the new one takes its name, and the old
one is deleted once the new one is complete. A failure before that leaves the old export
where it was. :func:`disk_errors` turns a full disk, however deep in Arrow or PIL it
happened, into an ``OSError(ENOSPC)`` saying "no space left on device" with the path.

Example:
    >>> import tempfile
    >>> final = Path(tempfile.mkdtemp()) / "run1"
    >>> (final / "table").mkdir(parents=True)
    >>> replacement = Replacement(final)
    >>> (replacement.staging / "table").mkdir(parents=True)
    >>> replacement.swap(); replacement.finish()
    >>> sorted(p.name for p in final.parent.iterdir())
    ['run1']
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["OWN_ENTRIES", "Replacement", "disk_errors", "names_disk_full"]

T = TypeVar("T")

OWN_ENTRIES = ("manifest.json", "table", "media", "README.md")
"""What an export owns in its directory (README.md: its HF dataset card); anything else
there is kept across an overwrite."""

_NO_SPACE = "no space left on device"


class Replacement:
    """A new export written beside ``final`` and swapped into place at the end."""

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        token = secrets.token_hex(4)
        self.staging = self.final.with_name(f".{self.final.name}.new-{token}")
        self.old = self.final.with_name(f".{self.final.name}.old-{token}")
        self._kept: list[str] = []

    def swap(self) -> None:
        """Put the new export at ``final`` and the old one aside (foreign files follow the new)."""
        os.replace(self.final, self.old)
        os.replace(self.staging, self.final)
        self._kept = [p.name for p in self.old.iterdir() if p.name not in OWN_ENTRIES]
        for name in self._kept:
            os.replace(self.old / name, self.final / name)

    def undo(self) -> None:
        """After a failed swap or finish: the old export back at ``final``, the new one gone."""
        if self.old.exists():
            for name in self._kept:
                os.replace(self.final / name, self.old / name)
            if self.final.exists():
                os.replace(self.final, self.staging)
            os.replace(self.old, self.final)
        self.discard()

    def discard(self) -> None:
        """Delete the unfinished new export (the old one is untouched)."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def finish(self) -> None:
        """The new export is complete: delete the old one."""
        shutil.rmtree(self.old, ignore_errors=True)


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
"""numpy's ``tofile`` (used by tifffile) reports a full disk only as a short write."""


def _is_disk_full(error: BaseException) -> bool:
    for cause in (error, error.__cause__, error.__context__):
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
        if cause is not None and (_NO_SPACE in str(cause).lower()
                                  or _SHORT_WRITE.search(str(cause))):
            return True
    return False


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Re-raise a full disk while writing under ``path`` as ``OSError(ENOSPC)`` naming it.

    Example:
        >>> with disk_errors(Path("/e")):
        ...     raise OSError(errno.ENOSPC, "No space left on device")
        Traceback (most recent call last):
        ...
        OSError: [Errno 28] /e: no space left on device while writing the export (OSError: [Errno 28] No space left on device); free space and run the export again: it resumes where it stopped
    """
    try:
        yield
    except Exception as error:
        if not _is_disk_full(error) or getattr(error, "_armory_disk_full", False):
            raise
        full = OSError(errno.ENOSPC, f"{path}: {_NO_SPACE} while writing the export "
                                     f"({type(error).__name__}: {error}); free space and run "
                                     f"the export again: it resumes where it stopped")
        full._armory_disk_full = True  # type: ignore[attr-defined]
        raise full from error


def names_disk_full(method: Callable[..., T]) -> Callable[..., T]:
    """Decorate a writer method: a full disk is reported by :func:`disk_errors` on ``self.export_dir``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        with disk_errors(self.export_dir):
            return method(self, *args, **kwargs)

    return wrapper
