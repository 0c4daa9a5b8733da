"""The lifecycle benchmark's worker: the lifecycle flow and an empty flow, served from one warm
process.

    python bench/lifecycle_worker.py --limit 4

Both deployments run the same way (a served flow run executes in a subprocess of this process),
so the empty flow's cost is Prefect's own floor for a lifecycle run's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect import serve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file: the project root

from bench.qa_worker import empty_flow  # noqa: E402 - the one empty flow both benchmarks serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=4, help="flow runs at once")
    args = parser.parse_args()
    os.chdir(ROOT)  # entrypoints are relative to the project root
    from flows.lifecycle import lifecycle_flow

    serve(
        lifecycle_flow.to_deployment(name="lifecycle", enforce_parameter_schema=True),
        empty_flow.to_deployment(name="bench-empty"),
        limit=args.limit,
        query_seconds=1,
        print_starting_message=False,
    )


if __name__ == "__main__":
    main()
