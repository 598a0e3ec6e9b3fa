"""Faults while writing (issue 12): each error names its cause and what to do.

A lost database connection during the FiftyOne build gives DatabaseUnavailableError
with the URI (not a raw pymongo AutoReconnect); the export directory stays complete
enough to rebuild the dataset later.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KILL_DURING_BUILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    from armory_datasets.database import DatabaseUnavailableError, PrivateMongod
    mongod = PrivateMongod()
    mongod.activate()
    from test_reading_support import digits_export
    path = digits_export(sys.argv[1], n=16, fiftyone=False, name="killed")
    from armory_datasets.database import import_fiftyone
    fo = import_fiftyone()
    import fiftyone.core.odm as foo
    insert = foo.insert_documents

    def insert_then_die(documents, *args, **kwargs):
        mongod.process.kill()
        mongod.process.wait()
        return insert(documents, *args, **kwargs)

    foo.insert_documents = insert_then_die
    from armory_datasets.store.fiftyone_import import build_fiftyone_dataset
    try:
        build_fiftyone_dataset(path)
    except DatabaseUnavailableError as error:
        print("ERROR", error)
    finally:
        mongod.stop()
""")


def test_a_database_killed_during_the_build_names_the_uri(tmp_path):
    result = subprocess.run([sys.executable, "-c", KILL_DURING_BUILD, str(tmp_path / "run")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "ERROR FiftyOne's database at mongodb://127.0.0.1:" in result.stdout, result.stderr[-3000:]
    assert "stopped answering while building FiftyOne dataset" in result.stdout
    assert "restart it" in result.stdout
