"""Local sockets for the processes Quire's demo, tests and benchmarks start.

Asking for a port lives here once: the demo's Prefect server, mail server and identity provider,
the test suite's live servers, the throwaway PostgreSQL cluster and the benchmarks' API servers
all ask the same way.
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port_from(port: int, host: str = HOST, tries: int = 100) -> int:
    """The first port from `port` on that nothing listens on at `host` (a well-known port when
    it is free, so that a person finds the UI where the README says it is)."""
    for candidate in range(port, port + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError(f"no free port in {port}..{port + tries - 1} on {host}")
