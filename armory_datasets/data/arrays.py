"""Array helpers shared by images, objects and batches.

Example:
    >>> to_numpy([1, 2]).tolist()
    [1, 2]
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from a torch tensor (any device, detached), numpy array or sequence.

    Example:
        >>> to_numpy([1, 2]).tolist()
        [1, 2]
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def is_torch(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "cpu")


def first_bad(mask: np.ndarray) -> int:
    """Position of the first True along axis 0 of a (N, ...) mask."""
    return int(np.argmax(mask.reshape(len(mask), -1).any(axis=1)))


def as_scalar(value: Any, field: str) -> bool | int | float | str:
    """A plain python scalar from a python/numpy scalar or a one-element tensor."""
    if is_torch(value) or isinstance(value, np.ndarray):
        array = to_numpy(value)
        if array.size != 1:
            raise ValueError(f"{field}: got an array of shape {array.shape}; expected a scalar")
        value = array.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError(f"{field}: got {type(value).__name__}; expected a bool, int, float or str")
    return value


# --------------------------------------------------------------------------- images


def require_finite(array: np.ndarray, field: str, expected: str = "finite values") -> None:
    """Raise naming the first sample with NaN or inf.

    Example:
        >>> require_finite(np.array([1.0, np.nan]), "scores")
        Traceback (most recent call last):
        ValueError: scores[1]: contains NaN or inf; expected finite values
    """
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"{field}[{first_bad(~finite)}]: contains NaN or inf; expected {expected}")
