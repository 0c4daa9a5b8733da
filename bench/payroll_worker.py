"""The payroll benchmark's worker: the `payroll-run` deployment, served from one process.

    python bench/payroll_worker.py --rusage-file /tmp/rusage.json

The deployment is the catalog's own (`deployments/catalog.py`, the one `quire worker` serves),
without its schedule. A served flow run executes in a subprocess of this process (Prefect's
runner spawns it and joins it), so once a flow run has ended, `getrusage(RUSAGE_CHILDREN)` here
holds its peak resident set and its CPU time even though the process is gone: a thread writes
them to `--rusage-file` several times a second, and the benchmark reads the file after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT = "payroll-run"


def report_children(path: Path, every: float = 0.2) -> None:
    """Keep `path` up to date with the reaped children's peak RSS (KiB) and CPU seconds."""
    while True:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        body = {
            "maxrss_kib": usage.ru_maxrss,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "at": time.time(),
        }
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body))
        temporary.replace(path)  # the reader never sees half a file
        time.sleep(every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=2, help="flow runs at once")
    parser.add_argument("--rusage-file", type=Path, required=True)
    args = parser.parse_args()
    os.chdir(ROOT)  # entrypoints are relative to the project root
    threading.Thread(target=report_children, args=(args.rusage_file,), daemon=True).start()

    from prefect import serve

    from deployments.catalog import runner_deployments

    deployments = [d for d in runner_deployments(schedules=False) if d.name == DEPLOYMENT]
    serve(*deployments, limit=args.limit, query_seconds=1, print_starting_message=False)


if __name__ == "__main__":
    main()
