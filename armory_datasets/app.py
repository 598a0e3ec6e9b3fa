"""Serve an export in the FiftyOne App, headless and remote-friendly.

The App server starts without opening a browser (a remote session): open the
printed URL locally, or from another machine with ``--address 0.0.0.0`` or an SSH
tunnel (``ssh -L 5151:localhost:5151 host``).

A busy port is refused (``PortInUseError``) instead of joining the server already
there, which FiftyOne would do silently. Each running server is noted in a file of
``app_registry_dir()`` (removed when it stops), which ``served_apps()`` and
``armory-datasets app --list`` read.

Example:
    >>> from armory_datasets.reading import open_export
    >>> session = launch_export_app(open_export("exports/run1"), where="~correct", port=5151)  # doctest: +SKIP
    >>> app_url(session)  # doctest: +SKIP
    'http://localhost:5151/'
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from armory_datasets.reading import Export, Where

DEFAULT_PORT = 5151
DEFAULT_ADDRESS = "localhost"
REGISTRY_ENV = "ARMORY_DATASETS_APP_DIR"
"""Environment variable naming the folder of running-server notes (tests set it)."""


class PortInUseError(OSError):
    """The App's port is taken (by another App or any other program)."""


def launch_export_app(export: Export, where: Where = None, port: int = DEFAULT_PORT,
                      address: str = DEFAULT_ADDRESS) -> Any:
    """Start the App on the export's FiftyOne view (records matching ``where``); return the session.

    Raises PortInUseError, naming the port, when something already listens there.

    Example:
        >>> launch_export_app(export, port=5152).wait(-1)  # doctest: +SKIP
    """
    from armory_datasets.database import import_fiftyone

    if not 0 < port < 65536:
        raise ValueError(f"port: got {port}; expected 1..65535")
    check_port_free(address, port)
    view = export.fiftyone(where)
    fo = import_fiftyone()
    # Given a view alone, FiftyOne ignores its dataset's colour scheme; pass it on.
    colors = fo.load_dataset(view.dataset_name).app_config.color_scheme
    session = fo.launch_app(view=view, port=port, address=address, remote=True, auto=False,
                            color_scheme=colors)
    _wait_until_connected(session, address, port)
    return session


def _wait_until_connected(session: Any, address: str, port: int, timeout: float = 60.0) -> None:
    """Return once the session has handed its state to the server.

    FiftyOne's session client first pings the server, and when the server is not up yet
    it retries 10 s later; its state (the view) reaches the server only then, and resets
    any browser already open (a modal opened meanwhile closes). No public API says when
    it is done, so this reads the client's private ``_connected`` flag, False while it
    waits to retry.
    """
    deadline = time.monotonic() + timeout
    while not _answers(address, port) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # a first ping that failed has set the flag by now
    client = getattr(session, "_client", None)
    while client is not None and not getattr(client, "_connected", True) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # the subscription request follows the flag


def check_port_free(address: str, port: int) -> None:
    """Raise PortInUseError when a server answers on, or holds, ``address:port``.

    Example:
        >>> check_port_free("127.0.0.1", free_port())
    """
    taken = _answers(address, port)
    if not taken:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as error:
                taken = error.errno == errno.EADDRINUSE
    if taken:
        ours = next((a for a in served_apps() if a["port"] == port), None)
        who = (f"armory-datasets app (pid {ours['pid']}) serves {ours['dataset']!r} there"
               if ours else "another program listens there")
        raise PortInUseError(errno.EADDRINUSE,
                             f"port {port} on {address} is in use: {who}; expected a free "
                             f"port (pass --port N; `armory-datasets app --list` shows our servers)")


def free_port() -> int:
    """A TCP port free on this machine now.

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


def app_url(session: Any) -> str:
    """The URL to open: the session's, with this host's name when serving on every address.

    Example:
        >>> app_url(session)  # doctest: +SKIP
        'http://localhost:5151/'
    """
    address = session.server_address
    host = socket.gethostname() if address in ("0.0.0.0", "::") else address
    return f"http://{host}:{session.server_port}/"


def app_registry_dir() -> Path:
    """Folder of the notes of running ``armory-datasets app`` servers: ``$ARMORY_DATASETS_APP_DIR``,
    else ``~/.cache/armory_datasets/apps``.

    Example:
        >>> app_registry_dir().name
        'apps'
    """
    given = os.environ.get(REGISTRY_ENV)
    if given:
        return Path(given)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "armory_datasets" / "apps"


@contextlib.contextmanager
def registered(session: Any, export: Export, where: Where) -> Iterator[dict[str, Any]]:
    """Note the session's server in the registry while the block runs.

    Example:
        >>> with registered(session, export, "~correct"):  # doctest: +SKIP
        ...     session.wait(-1)
    """
    view = session.view if session.view is not None else session.dataset
    entry = {"pid": os.getpid(), "port": int(session.server_port), "url": app_url(session),
             "address": session.server_address, "dataset": session.dataset.name,
             "export": str(export.path), "where": None if where is None else str(where),
             "samples": view.count()}
    folder = app_registry_dir()
    folder.mkdir(parents=True, exist_ok=True)
    note = folder / f"{entry['port']}.json"
    tmp = note.with_name(note.name + ".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, note)
    try:
        yield entry
    finally:
        with contextlib.suppress(FileNotFoundError):
            if json.loads(note.read_text()).get("pid") == entry["pid"]:
                note.unlink()


def served_apps() -> list[dict[str, Any]]:
    """The running ``armory-datasets app`` servers, by port; notes of dead ones are removed.

    A note counts when its process lives and its port answers; a note that is not valid
    JSON of the expected form is skipped.

    Example:
        >>> isinstance(served_apps(), list)
        True
    """
    folder = app_registry_dir()
    apps = []
    for note in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            entry = json.loads(note.read_text())
            pid, port = int(entry["pid"]), int(entry["port"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid) and _answers(entry.get("address") or DEFAULT_ADDRESS, port):
            apps.append(entry)
        else:
            with contextlib.suppress(OSError):
                note.unlink()
    return sorted(apps, key=lambda entry: entry["port"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
