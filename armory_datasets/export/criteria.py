"""Upstream's import path for the criteria language (``armory.export.criteria``).

Example:
    >>> from armory_datasets.export.criteria import every_n_batches
    >>> str(every_n_batches(5))
    'every_n_batches(5)'
"""

from armory_datasets.criteria import *  # noqa: F401,F403
from armory_datasets.criteria import __all__  # noqa: F401
