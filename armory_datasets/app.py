"""Serve an export in the FiftyOne App, headless and remote-friendly.

The App server starts without opening a browser (a remote session): open the
printed URL locally, or from another machine with ``--address 0.0.0.0`` or an SSH
tunnel (``ssh -L 5151:localhost:5151 host``).

Example:
    >>> from armory_datasets.reading import open_export
    >>> session = launch_export_app(open_export("exports/run1"), where="~correct", port=5151)  # doctest: +SKIP
    >>> app_url(session)  # doctest: +SKIP
    'http://localhost:5151/'
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from armory_datasets.reading import Export, Where

DEFAULT_PORT = 5151
DEFAULT_ADDRESS = "localhost"


def launch_export_app(export: Export, where: Where = None, port: int = DEFAULT_PORT,
                      address: str = DEFAULT_ADDRESS) -> Any:
    """Start the App on the export's FiftyOne view (records matching ``where``); return the session.

    Example:
        >>> launch_export_app(export, port=5152).wait(-1)  # doctest: +SKIP
    """
    from armory_datasets.database import import_fiftyone

    if not 0 < port < 65536:
        raise ValueError(f"port: got {port}; expected 1..65535")
    view = export.fiftyone(where)
    fo = import_fiftyone()
    return fo.launch_app(view=view, port=port, address=address, remote=True, auto=False)


def app_url(session: Any) -> str:
    """The URL to open: the session's, with this host's name when serving on every address.

    Example:
        >>> app_url(session)  # doctest: +SKIP
        'http://localhost:5151/'
    """
    address = session.server_address
    host = socket.gethostname() if address in ("0.0.0.0", "::") else address
    return f"http://{host}:{session.server_port}/"
