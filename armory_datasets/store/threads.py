"""One background thread per purpose and process, for the writer's overlapped work.

A module-level ``ThreadPoolExecutor`` does not survive ``fork``: the child inherits the
executor but not its thread, and may count that thread as idle, so work submitted in the
child never runs. :func:`background` keeps one executor per purpose, and a forked child
forgets its parent's (and the lock guarding them, which another thread may have held).

Example:
    >>> background("example").submit(sum, [1, 2]).result()
    3
    >>> background("example") is background("example")
    True
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["background"]

_EXECUTORS: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def background(purpose: str) -> ThreadPoolExecutor:
    """This process's single-thread executor for ``purpose`` (its threads are named after it)."""
    executor = _EXECUTORS.get(purpose)
    if executor is None:
        with _LOCK:
            executor = _EXECUTORS.get(purpose)
            if executor is None:
                executor = _EXECUTORS[purpose] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=purpose)
    return executor


def _forget_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()
    _EXECUTORS.clear()


os.register_at_fork(after_in_child=_forget_in_child)
