"""A local Spark session for the tests that compare Spark SQL (no tests here).

``local_spark()`` starts one on one core, or skips the calling test with the reason
(pyspark not installed, no Java); each test module holds one for its tests and stops it.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest


def local_spark() -> Any:
    """A ``SparkSession`` on ``local[1]`` with the UI off, or a pytest skip saying why not."""
    pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (pip install pyspark)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java: apt-get install default-jre-headless (./dev does)")
    session = (pyspark.sql.SparkSession.builder.master("local[1]").appName("criteria")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session
