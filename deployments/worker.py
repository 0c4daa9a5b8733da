"""`quire worker`: serve every deployment from this one process (the embedded mode).

Flow runs execute in subprocesses of this process, so a suspended QA run holds nothing while it
waits for a reviewer. In server mode use a Prefect worker on the `quire` work pool instead
(`prefect deploy --all` from prefect.yaml, then `prefect worker start --pool quire`).
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import serve

import flows
from deployments.catalog import runner_deployments

# Entrypoints (flows/qa_pipeline.py:...) are relative to the project root.
PROJECT_ROOT = Path(flows.__file__).resolve().parent.parent


def main(*, limit: int = 8, poll_seconds: float = 2.0, schedules: bool = True) -> None:
    os.chdir(PROJECT_ROOT)
    serve(
        *runner_deployments(schedules=schedules),
        limit=limit,
        query_seconds=poll_seconds,  # how soon a new run (a submission's QA) is picked up
        print_starting_message=True,
    )


if __name__ == "__main__":
    main()
