"""Timing helper shared by the benchmarks that measure wall-clock time.

Example:
    >>> seconds, value = best_of(2, lambda: 1 + 1)
    >>> value
    2
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(repeats: int, function: Callable[[], object]) -> tuple[float, object]:
    """Smallest wall-clock time of ``repeats`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result
