"""The README's main command, end to end, as a newcomer meets it: `quire demo`.

It onboards a new specialist from HR's signed webhook, walks an order from claim to earnings,
leaves the Prefect UI serving the deployments and the QA reports, keeps running, and stops,
every child with it, on Ctrl-C (SIGINT to the whole foreground process group, as a terminal
sends it) or on SIGTERM to the main process alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.demo import READY_MESSAGE
from deployments.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STOPPED_WITHIN_SECONDS = 20.0  # SIGTERM grace per stage is 8 s; usually done in about 4 s
JWT_SECRET = "demo-test-secret-that-is-long-enough-0123456789"


class Demo:
    """`quire demo` in its own process group (as a shell runs a foreground job)."""

    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.api_port, self.prefect_port = free_port(), free_port()
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PREFECT_", "QUIRE_")) and name != "DATABASE_URL"
        }
        env.update(
            QUIRE_DATA_DIR=str(self.data),
            QUIRE_API_PORT=str(self.api_port),
            QUIRE_JWT_SECRET=JWT_SECRET,
            PREFECT_SERVER_API_PORT=str(self.prefect_port),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
        )
        self.console = tmp / "console.txt"
        with self.console.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deployments.cli", "demo"],
                env=env,
                cwd=tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=0,
            )

    def output(self) -> str:
        return self.console.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited ({self.process.returncode}) before {text!r}:\n{out}")
            time.sleep(0.5)
        pytest.fail(f"no {text!r} after {timeout:.0f}s:\n{self.output()[-3000:]}")

    def processes(self) -> set[int]:
        """The demo and every process that carries its data directory in its environment: its
        children, theirs (flow runs), and any that outlived it (orphans)."""
        marker = f"QUIRE_DATA_DIR={self.data}".encode()
        found = {self.process.pid} if self.process.poll() is None else set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environment = (entry / "environ").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker in environment and state != "Z":
                found.add(int(entry.name))
        return found

    def stop(self, sig: signal.Signals, *, whole_group: bool) -> float:
        """Send `sig` (to the process group, or to the main process only); seconds to exit."""
        started = time.monotonic()
        if whole_group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        try:
            self.process.wait(STOPPED_WITHIN_SECONDS + 30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo still runs {STOPPED_WITHIN_SECONDS + 30:.0f}s after {sig.name}")
        return time.monotonic() - started

    def kill_leftovers(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(10)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def assert_everything_stopped(demo: Demo, seconds: float, children: set[int], sig: str) -> None:
    assert seconds < STOPPED_WITHIN_SECONDS, f"the demo took {seconds:.1f}s to stop on {sig}"
    assert demo.process.returncode == 0, demo.output()[-3000:]
    time.sleep(0.5)  # anything left would be an orphan now, re-parented and still running
    left = demo.processes()
    assert not left, f"left running after {sig}: {left} (children were {sorted(children)})"
    assert not listening(demo.prefect_port), "the Prefect server's port is still taken"
    assert not listening(demo.api_port), "the API's port is still taken"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path)
    try:
        yield running
    finally:
        running.kill_leftovers()


def test_the_demo_walks_an_order_to_earnings_and_payroll_shows_it_in_the_prefect_ui_and_stops(
    demo: Demo,
) -> None:
    out = demo.wait_for_output(READY_MESSAGE, timeout=600)

    # HR's signed webhook onboards a new specialist on the local identity provider, mail server
    # and chat; a forged delivery is refused; each step is printed as it finishes.
    assert "a delivery signed with any other secret is refused: 401" in out, out
    assert "signs and sends person.onboard for Nia Okafor: 202 accepted" in out, out
    steps = re.findall(r"^ {4}(\w+) +[a-z]+\.[a-z_]+ +(\w+)", out, flags=re.MULTILINE)
    printed = dict(steps)
    assert printed == {
        "account": "succeeded",
        "specialist": "succeeded",
        "draft": "skipped",  # no AI endpoint is configured in the demo
        "contract": "succeeded",
        "groups": "succeeded",
        "welcome_email": "succeeded",
        "announce": "succeeded",
        "first_day": "succeeded",
    }, out
    assert "the onboarding run is completed" in out, out
    assert "holds nia.okafor@demo.quire's account (active; groups: specialists, editors)" in out
    mails = sorted((demo.data / "mail").glob("*.eml"))
    subjects = {m.read_text().partition("Subject: ")[2].splitlines()[0] for m in mails}
    assert subjects == {
        "Welcome to Demo Consultancy, Nia",
        "Invitation: Welcome, Nia: your first day",
    }, out
    assert "the team's chat received: :wave: Please welcome Nia Okafor" in out, out

    # The walk-through, on the console: the steps, no server logs.
    assert out.count("accepted; earnings posted") == 2
    assert "may not approve their own run: 403 four_eyes" in out
    assert re.search(r"payroll \d{4}-\d{2} \(attempt 1\): posted", out), out
    assert re.search(r"pays +EUR [\d,.]+ +to 1 specialist", out), out
    assert re.search(r"pays +JPY [\d,]+ +to 1 specialist", out), out
    # The bank's statement answers the payout files; reconciliation settles one payout, reverses
    # the returned one, raises nothing, and the ledger's invariants are proved with Data Docs.
    assert "sends its camt.053 statement" in out, out
    assert re.search(r"uploads it through the API: 2 statement\(s\) stored", out), out
    recs = re.findall(
        r"reconciliation \d{4}-\d{2}: (\w+): matched (\d+), settled (\d+), returned (\d+), "
        r"exceptions (\d+); ledger invariants (\w+)",
        out,
    )
    assert sorted(recs) == [
        ("clean", "1", "1", "0", "0", "proved"),
        ("clean", "2", "0", "1", "0", "proved"),
    ], out
    docs = [Path(p) for p in re.findall(r"data docs +(\S+)", out)]
    assert len(docs) == 2, out
    assert all(d.name == "index.html" and d.exists() for d in docs), out
    files = [Path(p) for p in re.findall(r"file +(\S+)", out)]
    assert {f.name.split(".", 1)[-1] for f in files} >= {"pain.001.001.09.xml"}, out
    assert all(f.exists() and f.stat().st_size > 0 for f in files), files
    assert "Traceback" not in out, out
    assert "database is locked" not in out, out
    assert (demo.data / "quire.db").exists()
    assert (demo.data / "logs" / "prefect-server.log").stat().st_size > 0

    # The printed address serves the Prefect UI (the page, not a 404 JSON).
    [ui] = re.findall(r"Prefect UI: (http://\S+)", out)
    assert ui == f"http://127.0.0.1:{demo.prefect_port}"
    page = httpx.get(ui, headers={"Accept": "text/html"}, follow_redirects=True, timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.lstrip().lower().startswith("<!doctype html>")

    # Through its API: the deployments with their schedules, and one QA report per submission.
    prefect = httpx.Client(base_url=f"{ui}/api", timeout=30)
    deployments = prefect.post("/deployments/filter", json={}).json()
    schedules = {
        d["name"]: sorted(
            (s["schedule"]["cron"], s["schedule"]["timezone"]) for s in d["schedules"]
        )
        for d in deployments
    }
    assert schedules == {
        "qa-pipeline": [],
        "outbox-relay": [("* * * * *", "UTC")],
        "maintenance": [("0 * * * *", "UTC")],
        "payroll-run": [("0 6 2 * *", "Europe/London")],
        "reconcile-ledger": [("0 7 * * *", "Europe/London")],
        "notify-finance": [],
        "lifecycle": [],  # started by the relay, one run per event
    }
    artifacts = prefect.post("/artifacts/filter", json={}).json()
    reports = {a["key"] for a in artifacts if (a["key"] or "").startswith("qa-report-")}
    assert len(reports) == 2, artifacts
    assert {a["type"] for a in artifacts if a["key"] in reports} == {"markdown"}
    # The payroll's preview, as an approver looks at it in the UI.
    kinds = {a["key"]: a["type"] for a in artifacts if (a["key"] or "").startswith("payroll-")}
    assert "table" in {kind for key, kind in kinds.items() if key.endswith("-lines")}, kinds
    assert "markdown" in {kind for key, kind in kinds.items() if key.endswith("-summary")}, kinds
    # The onboarding run's steps as a table and the playbook it followed, linking to its DAG.
    lifecycle = {
        a["key"]: a["type"] for a in artifacts if (a["key"] or "").startswith("lifecycle-")
    }
    assert lifecycle.get("lifecycle-playbook-person-onboard") == "markdown", lifecycle
    assert "table" in lifecycle.values(), lifecycle
    prefect.close()

    # Ctrl-C: SIGINT to the whole foreground process group.
    children = demo.processes() - {demo.process.pid}
    assert len(children) >= 3, children  # the Prefect server, the worker, the API
    seconds = demo.stop(signal.SIGINT, whole_group=True)
    assert_everything_stopped(demo, seconds, children, "Ctrl-C")


def test_sigterm_to_the_demo_alone_stops_every_child(demo: Demo) -> None:
    """As soon as the servers are up (the signal path, not the walk-through, is under test)."""
    demo.wait_for_output("waiting for the worker to serve the deployments", timeout=300)
    children = demo.processes() - {demo.process.pid}
    assert len(children) >= 3, children
    seconds = demo.stop(signal.SIGTERM, whole_group=False)
    assert_everything_stopped(demo, seconds, children, "SIGTERM")
