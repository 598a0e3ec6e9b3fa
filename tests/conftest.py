"""Session setup: a private mongod for FiftyOne, and one thread for torch.

The mongod starts when pytest imports this file, before any test imports fiftyone,
so fiftyone (in this process and in subprocesses, which inherit the environment)
only ever sees this server and a database name unique to this session.

Example: ``./dev test tests/test_database.py -q``
"""

from __future__ import annotations

import atexit
import importlib.util
import os

import pytest

from armory_datasets.database import PrivateMongod

os.environ.setdefault("OMP_NUM_THREADS", "1")
_MONGOD = PrivateMongod()
_MONGOD.activate()
# Registered before fiftyone is imported, so it runs after fiftyone's own atexit
# cleanup, which still finds the server alive and exits without waiting.
atexit.register(_MONGOD.stop)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Limit torch to one thread for the whole session, if torch is installed."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)
