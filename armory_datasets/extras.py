"""Optional dependencies: a feature whose extra is not installed says which one to install.

``pip install armory-datasets`` reads and queries exports (pyarrow, DuckDB, pandas,
numpy; jsonschema, pillow and tifffile for the manifest and media). The extras of
pyproject.toml add the rest: ``[fiftyone]`` (datasets, App), ``[torch]`` (engine,
perturbations, torch datasets, digits demo), ``[saliency]`` (Captum, XAITK, D-RISE),
``[hf]`` (Hugging Face ``datasets``), ``[polars]``, ``[spark]``, ``[ray]`` and ``[all]``
(all but Spark and Ray). A module that needs one calls
:func:`require` before importing it, so a missing package is one
:class:`MissingExtraError` (an ``ImportError``) naming the extra, not a bare
``No module named 'torch'`` from deep inside.

Example:
    >>> require("no_such_package", extra="torch", feature="armory_datasets.perturbations")
    Traceback (most recent call last):
    ...
    armory_datasets.extras.MissingExtraError: armory_datasets.perturbations needs no_such_package, which is not installed: pip install 'armory-datasets[torch]'
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "require"]

EXTRAS = ("fiftyone", "torch", "saliency", "hf", "polars", "spark", "ray", "all")


class MissingExtraError(ImportError):
    """A feature's optional dependency is missing; the message names the extra to install.

    Example:
        >>> issubclass(MissingExtraError, ImportError)
        True
    """


def require(*modules: str, extra: str, feature: str) -> None:
    """Check, without importing them, that ``modules`` are installed; else raise
    :class:`MissingExtraError` naming ``extra``.

    Example:
        >>> require("numpy", "pyarrow", extra="all", feature="reading")
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra: got {extra!r}; expected one of {', '.join(EXTRAS)}")
    for module in modules:
        if importlib.util.find_spec(module.partition(".")[0]) is None:
            raise MissingExtraError(
                f"{feature} needs {module}, which is not installed: "
                f"pip install 'armory-datasets[{extra}]'", name=module)
