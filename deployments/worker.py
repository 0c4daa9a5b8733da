"""`quire worker`: serve every deployment from this one process (the embedded mode).

Flow runs execute in subprocesses of this process, so a suspended QA run holds nothing while it
waits for a reviewer. In server mode use a Prefect worker on the `quire` work pool instead
(`prefect deploy --all` from prefect.yaml, then `prefect worker start --pool quire`).

SIGTERM stops it as promptly as Ctrl-C does (see `QuireRunner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import anyio
from prefect.runner import Runner

import flows
from deployments.catalog import runner_deployments

# Entrypoints (flows/qa_pipeline.py:...) are relative to the project root.
PROJECT_ROOT = Path(flows.__file__).resolve().parent.parent
PAUSE_TIMEOUT_SECONDS = 3.0


class QuireRunner(Runner):
    """Prefect's runner, stopping on SIGTERM as promptly as on Ctrl-C, server or no server.

    - Shutdown pauses the deployments' schedules through the server. When the server has gone
      first (the old demo's Ctrl-C reached Prefect's server directly) the client retried for
      over a minute (70 s measured) before the worker exited: the pause gets a time limit here.
    - Prefect 3.8.8's `Runner.handle_sigterm` calls `stop()` from inside the running event loop,
      where it only makes a coroutine nobody awaits ("never awaited" warning), then raises
      `SystemExit` at whatever point the loop was. Here SIGTERM cancels the runner's main task
      instead, which is what `asyncio.run` does on Ctrl-C: the runner leaves its `async with`
      (flow-run processes stopped, schedules paused) and `main` returns.
    """

    _main_task: asyncio.Task[Any] | None = None
    served: tuple[str, ...] = ()  # the deployments' full names

    async def start(self, run_once: bool = False, webserver: bool | None = None) -> None:
        self._main_task = asyncio.current_task()
        await super().start(run_once=run_once, webserver=webserver)

    async def _pause_schedules(self) -> None:
        # Pausing talks to the server; a server already gone (or going) must not hold the
        # shutdown for the client's retries (over a minute).
        with anyio.move_on_after(PAUSE_TIMEOUT_SECONDS):
            await super()._pause_schedules()

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        self._logger.info("SIGTERM received, shutting down...")
        if not self.stop_soon():
            raise SystemExit(0)

    def stop_soon(self) -> bool:
        """Ask the running `start()` to end, from any thread (SIGTERM's handler, or a test's
        teardown); False if it is not running."""
        task = self._main_task
        if task is None or task.done():
            return False
        task.get_loop().call_soon_threadsafe(task.cancel)
        return True


def build(*, limit: int = 8, poll_seconds: float = 2.0, schedules: bool = True) -> QuireRunner:
    """A runner with every deployment of the catalog added, not started."""
    os.chdir(PROJECT_ROOT)
    runner = QuireRunner(
        limit=limit,
        query_seconds=poll_seconds,  # how soon a new run (a submission's QA) is picked up
    )
    deployments = runner_deployments(schedules=schedules)
    for deployment in deployments:
        runner.add_deployment(deployment)
    runner.served = tuple(d.full_name for d in deployments)
    return runner


def serve(runner: QuireRunner) -> None:
    """Serve until Ctrl-C, SIGTERM or `runner.stop_soon()`."""
    print(f"quire worker: serving {', '.join(runner.served)}", flush=True)
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):  # how it stops
        asyncio.run(runner.start())
    print("quire worker: stopped", flush=True)


def main(*, limit: int = 8, poll_seconds: float = 2.0, schedules: bool = True) -> None:
    serve(build(limit=limit, poll_seconds=poll_seconds, schedules=schedules))


if __name__ == "__main__":
    main()
