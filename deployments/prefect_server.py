"""The demo's Prefect server: `prefect server start`, UI included, as a child process.

Ops live in the Prefect UI, so the demo runs the real server (API and UI on one port, as in
docker-compose.yml), not Prefect's temporary test server (which turns its UI off). It keeps its
home and its own SQLite database under Quire's data directory and logs to a file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

DEFAULT_PORT = 4200  # Prefect's own default; the next free port if it is taken

# The `prefect` of this interpreter's environment, not whatever is first on PATH.
PREFECT = str(Path(sys.executable).with_name("prefect"))


# SQLite has one writer at a time. Prefect already runs it in WAL mode with a 60 s busy timeout,
# but most of its transactions begin DEFERRED: one that reads, then writes after another
# connection has committed, fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT; no
# busy timeout applies). Every server service and every API call is such a connection, so the
# demo runs fewer writers: no automations (triggers) and no work-pool health (foreman), which the
# embedded mode does not use, and task runs recorded in batches rather than one write each.
FEWER_WRITERS = {
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "20",
}


def server_environment(home: Path, host: str, port: int) -> dict[str, str]:
    """Prefect settings (names as `prefect.settings` reads them) for the demo's server."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_UI_ENABLED": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **FEWER_WRITERS,
        # Lock failures are retried (the client gets a 503 and tries again) and Prefect hides
        # them from its log by default; the demo's log shows them, so contention stays visible.
        "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
    }


def server_command(host: str, port: int) -> list[str]:
    return [PREFECT, "server", "start", "--host", host, "--port", str(port)]


def healthy(api_url: str) -> bool:
    """Does the server's API answer `/health`?"""
    try:
        return httpx.get(f"{api_url}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
