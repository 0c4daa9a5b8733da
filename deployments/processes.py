"""Child processes that stop when their parent says so, children of theirs included.

Each child runs in its own session (so its own process group):

- a terminal's Ctrl-C (SIGINT to the foreground process group) reaches only the parent, which then
  stops the children itself, in the order it chooses (the clients of a server before the server);
- signalling a child's group reaches what the child started (a worker's flow-run processes), and
  after the child itself has exited, whatever of its group is left is killed rather than orphaned.

Stopping is bounded: SIGTERM to every group at once, SIGKILL to the groups still there after
`grace` seconds, so a child that ignores SIGTERM costs seconds, not a hang.

The demo (`deployments/demo.py`), the benchmarks' `ServerProcess` (`bench/harness.py`) and the
smoke test's `Service` (`tests/deployments/test_smoke.py`) all start and stop children here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 8.0


def start(
    args: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = PROJECT_ROOT,
) -> subprocess.Popen[bytes]:
    """`args` in its own session, from `cwd` (the project root unless given), stdout and stderr
    written to `log` (truncated first)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def _signal_group(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """`sig` to the child's process group if the group still has a member, else nothing.

    The group keeps the leader's pid as its id, and the kernel keeps that pid from being reused,
    only while some member is alive (the leader or, after it has exited, what it started). Once
    the group is empty the pid is free again, so an empty group is never signalled."""
    try:
        os.killpg(child.pid, 0)  # is anyone left in the group?
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):  # ESRCH: empty; EPERM: none we may signal
        pass


def stop(
    children: Sequence[subprocess.Popen[bytes]],
    grace: float = STOP_GRACE_SECONDS,
    *,
    sig: signal.Signals = signal.SIGTERM,
) -> None:
    """Stop every child's process group: `sig` (SIGTERM unless given) to all at once, SIGKILL
    after `grace` seconds.

    Returns once every leader is reaped and what was left of each group has been sent SIGKILL."""
    for child in children:
        if child.poll() is None:
            _signal_group(child, sig)
    deadline = time.monotonic() + grace
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.0, deadline - time.monotonic()))
    for child in children:
        # Leaders that outlived the grace, and members that outlived their leader.
        _signal_group(child, signal.SIGKILL)
        child.wait()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM raises KeyboardInterrupt as Ctrl-C does, so `finally` blocks run.

    (Python's default for SIGTERM ends the process at once, leaving its children running.)"""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside (a cleanup that must finish; it is bounded anyway)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
