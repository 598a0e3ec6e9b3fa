"""One background thread per purpose and process, for the writer's overlapped work.

A module-level ``ThreadPoolExecutor`` does not survive ``fork``: the child inherits the
executor but not its thread, and may count that thread as idle, so work submitted in the
child never runs. :func:`background` keeps one executor per (purpose, process id) and
makes a new one in a forked child.

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

_EXECUTORS: dict[tuple[str, int], ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def background(purpose: str) -> ThreadPoolExecutor:
    """This process's single-thread executor for ``purpose`` (its threads are named after it)."""
    key = (purpose, os.getpid())
    executor = _EXECUTORS.get(key)
    if executor is None:
        with _LOCK:
            executor = _EXECUTORS.get(key)
            if executor is None:
                executor = _EXECUTORS[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=purpose)
    return executor
