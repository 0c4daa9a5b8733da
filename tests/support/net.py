"""Local sockets for the processes tests and benchmarks start.

`free_port` lives here once: the test suite's live servers, the throwaway PostgreSQL cluster and
the benchmarks' API servers all ask the kernel for a port the same way.
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
