"""What every benchmark here needs besides its method: databases, server processes, CPU
accounting, statistics, the common flags and the report's pieces.

A benchmark script keeps only what it seeds, what it measures and what it compares. PostgreSQL
provisioning is the test suite's (`tests/support/postgres.py`), so a benchmark makes and drops
its databases exactly as the fixtures do; `free_port` is `tests/support/net.py`'s.

The scripts run as files (`.venv/bin/python bench/claim_race.py`), so each puts the project
root on `sys.path` before importing this module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import psycopg

from deployments import processes
from deployments.net import HOST, free_port
from tests.support import postgres
from tests.support.postgres import admin_dsn

__all__ = [
    "HOST",
    "CpuSnapshot",
    "CpuUse",
    "Databases",
    "ServerProcess",
    "add_common_options",
    "admin_dsn",
    "cpu_snapshot",
    "cpu_use",
    "describe_server",
    "free_port",
    "markdown_table",
    "median",
    "new_parser",
    "percentile",
    "process_tree",
    "read_procs",
    "require_positive",
    "server_settings",
]

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# -- command line ------------------------------------------------------------------------------


def new_parser(description: str | None) -> argparse.ArgumentParser:
    """A parser that shows every default in `--help`."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def add_common_options(
    parser: argparse.ArgumentParser, *, repeat: int, seed: int | None = None
) -> None:
    """The flags every benchmark takes: `--repeat`, `--admin-url`, `--keep` (and `--seed` when
    its workload is random)."""
    parser.add_argument("--repeat", "-r", type=int, default=repeat, help="runs; medians reported")
    parser.add_argument(
        "--admin-url",
        default=DEFAULT_ADMIN_URL,
        help="PostgreSQL URL with CREATE DATABASE rights",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed, help="random seed of the workload")


def require_positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str
) -> None:
    """Refuse (exit status 2, with usage) any of these options below 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")


# -- PostgreSQL --------------------------------------------------------------------------------


class Databases:
    """The databases of one benchmark run, under one random prefix
    (`quire_bench_<kind>_<random>`): dropped when the block ends unless `keep`."""

    def __init__(self, kind: str, admin_url: str, keep: bool = False) -> None:
        self.admin_url = admin_url
        self.keep = keep
        self.prefix = f"quire_bench_{kind}_{secrets.token_hex(4)}"
        self.created: list[str] = []
        self.counter = 0

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.drop_all()

    def create(self, suffix: str | None = None, template: str | None = None) -> str:
        """`<prefix>_<suffix>` (the prefix alone without a suffix); a copy of `template` if one
        is given."""
        self.counter += 1
        name = f"{self.prefix}_{suffix}" if suffix else self.prefix
        return self._create(name, template)

    def copy(self, suffix: str, template: str) -> str:
        """A fresh numbered copy of `template` (`<prefix>_<suffix><n>`), e.g. one per phase."""
        self.counter += 1
        return self._create(f"{self.prefix}_{suffix}{self.counter}", template)

    def _create(self, name: str, template: str | None) -> str:
        postgres.create_database(self.admin_url, template, name=name)
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        if self.keep:
            return
        postgres.drop_database(self.admin_url, name)
        with contextlib.suppress(ValueError):
            self.created.remove(name)

    def drop_all(self) -> None:
        if self.keep:
            if self.created:
                print(f"kept databases: {', '.join(self.created)}")
            return
        for name in list(self.created):
            with contextlib.suppress(psycopg.Error):
                self.drop(name)

    def url(self, name: str, driver: str = "postgresql") -> str:
        """Database `name` for libpq/psycopg (`postgresql`) or SQLAlchemy (`postgresql+psycopg`)."""
        return postgres.with_database(self.admin_url, name, driver)

    def execute(self, *statements: str) -> None:
        """Statements on the admin connection (CHECKPOINT, ...)."""
        postgres.admin_execute(self.admin_url, *statements)


def server_settings(admin_url: str, names: Sequence[str]) -> dict[str, str]:
    """`SHOW name` for each name, e.g. server_version, fsync, synchronous_commit."""
    with psycopg.connect(admin_dsn(admin_url), autocommit=True) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}  # type: ignore[index,arg-type]


def describe_server(settings: Mapping[str, str]) -> str:
    """`PostgreSQL 16.4 (fsync=on, ...)`: the line a report starts with."""
    rest = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "server_version")
    return f"PostgreSQL {settings['server_version'].split()[0]} ({rest})"


# -- server processes --------------------------------------------------------------------------


class ServerProcess:
    """A subprocess in its own process group (so its workers and flow runs go with it), logging
    to `log`; `stop` sends `stop_signal` to the group, SIGKILL after `grace` seconds, then SIGKILL
    to whatever of the group outlived the leader. Starting and stopping are
    `deployments/processes.py`'s, as for the demo."""

    def __init__(
        self,
        args: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = processes.PROJECT_ROOT,
        stop_signal: signal.Signals = signal.SIGTERM,
        grace: float = 20.0,
    ) -> None:
        self.log_path = log
        self.stop_signal = stop_signal
        self.grace = grace
        self.process = processes.start(args, log, env=env, cwd=cwd)
        self._stopped = False

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_http(self, url: str, timeout: float = 90.0, what: str = "the server") -> None:
        """Until `url` answers 200; fails at once if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{what} exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not become ready in {timeout:.0f}s")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Idempotent: a second call signals nothing (the group's id may belong to another by
        then)."""
        if not self._stopped:
            self._stopped = True
            processes.stop([self.process], self.grace, sig=self.stop_signal)


# -- CPU accounting from /proc (Linux) ---------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    cpu: float  # own user + system seconds


def read_procs() -> dict[int, ProcStat]:
    """Every process on the machine with its CPU seconds so far."""
    procs: dict[int, ProcStat] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        close = text.rfind(")")
        f = text[close + 2 :].split()
        comm = text[text.find("(") + 1 : close]
        procs[int(entry.name)] = ProcStat(
            int(entry.name), int(f[1]), comm, (int(f[11]) + int(f[12])) / TICK
        )
    return procs


def process_tree(procs: dict[int, ProcStat], root: int) -> list[int]:
    """`root` and its descendants, parents first."""
    if root not in procs:
        return []
    tree = [root]
    for proc in sorted(procs.values(), key=lambda p: p.pid):
        if proc.ppid in tree:
            tree.append(proc.pid)
    return tree


def _serves(pid: int, databases: Sequence[str]) -> bool:
    """Whether a postgres process is a backend of one of `databases` (from its ps title)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return any(name in databases for name in title.split())


def _machine_cpu() -> tuple[float, float]:
    """(busy, stolen) CPU seconds summed over all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / TICK, steal / TICK


@dataclass(frozen=True)
class CpuSnapshot:
    at: float  # perf_counter seconds
    server: dict[int, float]  # pid -> seconds: the server process and its descendants
    postgres: dict[int, float]  # pid -> seconds: backends of the benchmark's databases
    client: float  # this process (the load generator)
    machine: float  # every process on the machine, not counting time stolen by the hypervisor
    stolen: float


def cpu_snapshot(server_pid: int | None, databases: Sequence[str]) -> CpuSnapshot | None:
    """CPU seconds so far of each component; None where there is no /proc."""
    try:
        procs = read_procs()
        machine, stolen = _machine_cpu()
    except (OSError, ValueError, IndexError):
        return None
    server: dict[int, float] = {}
    if server_pid is not None:
        server = {pid: procs[pid].cpu for pid in process_tree(procs, server_pid)}
    postgres_cpu = {
        p.pid: p.cpu for p in procs.values() if p.comm == "postgres" and _serves(p.pid, databases)
    }
    return CpuSnapshot(
        time.perf_counter(), server, postgres_cpu, time.process_time(), machine, stolen
    )


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds each component used between two snapshots `span` wall seconds apart."""

    span: float
    server_procs: tuple[float, ...]  # each server process, busiest first
    postgres: float  # backends of the benchmark's databases alive at the second snapshot
    client: float
    machine: float  # every process on the machine (not counting time stolen by the hypervisor)
    stolen: float

    @property
    def server(self) -> float:
        return sum(self.server_procs)

    @property
    def other(self) -> float:
        """Everything else: other processes (other databases, test suites...), PostgreSQL's
        background processes and backends that disconnected in between."""
        return max(0.0, self.machine - self.server - self.postgres - self.client)

    def cores(self, name: str) -> float:
        """A component's seconds per wall second: how many cores it kept busy."""
        return float(getattr(self, name)) / self.span


def _delta(before: dict[int, float], after: dict[int, float]) -> list[float]:
    return sorted((after[pid] - before.get(pid, 0.0) for pid in after), reverse=True)


def cpu_use(before: CpuSnapshot | None, after: CpuSnapshot | None) -> CpuUse | None:
    if before is None or after is None:
        return None
    return CpuUse(
        span=after.at - before.at,
        server_procs=tuple(_delta(before.server, after.server)),
        postgres=sum(_delta(before.postgres, after.postgres)),
        client=after.client - before.client,
        machine=after.machine - before.machine,
        stolen=after.stolen - before.stolen,
    )


# -- statistics and report pieces --------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(
    sorted_values: Sequence[float], q: float, method: Literal["nearest", "lower"] = "nearest"
) -> float:
    """The `q` quantile of already sorted values. `nearest`: the nearest-rank definition (the
    smallest value with at least q of the values at or below it); `lower`: the value at index
    floor(q * (n - 1)), numpy's "lower"."""
    if not sorted_values:
        return float("nan")
    n = len(sorted_values)
    if method == "lower":
        return sorted_values[int(q * (n - 1))]
    return sorted_values[max(0, min(n - 1, round(q * n + 0.5) - 1))]


def markdown_table(headers: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> str:
    """A markdown table; `align` has one letter per column: `l` (left) or `r` (right)."""
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    body = ["| " + " | ".join(cells) + " |" for cells in [headers, *rows]]
    return "\n".join([body[0], rule, *body[1:]])
