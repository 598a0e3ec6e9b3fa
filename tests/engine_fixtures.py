"""Module-scoped fixtures for the tests that compare distributed engines (no tests here).

``spark``: a local Spark session on one core; ``ray_data``: Ray Data on a local one-CPU
Ray. Each skips the calling test with the reason (pyspark or Ray not installed, no Java).
A test module imports the fixtures it uses; each module gets its own session.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A ``SparkSession`` on ``local[1]`` with the UI off, or a pytest skip saying why not."""
    pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install pyspark)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java: apt-get install default-jre-headless (./dev does)")
    session = (pyspark.sql.SparkSession.builder.master("local[1]").appName("armory-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def ray_data() -> Iterator[Any]:
    """Ray Data on a local one-CPU Ray, or a skip saying why not."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[data]')")
    try:  # ray.data.read_parquet imports it; some fsspec releases lack it
        from fsspec.implementations.http import HTTPFileSystem  # noqa: F401
    except ImportError as error:
        pytest.skip(f"ray.data.read_parquet cannot run with this fsspec: {error}")
    import ray.data

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray.data
    ray.shutdown()
