"""prefect.yaml, rendered from the deployment catalog (`quire deployments render [--check]`).

Server mode (`prefect --no-prompt deploy --all`, docker-compose.yml's one-shot deploy) reads
prefect.yaml; the embedded mode (`quire worker`) serves the same catalog directly. The file is
checked in so that `prefect deploy` needs nothing but the CLI; a test keeps it equal to
`render()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prefect
import yaml

from deployments.catalog import CATALOG, WORK_POOL, Deployment

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
RENDER_COMMAND = "quire deployments render"
# Workers pull nothing: the code is already where they run (the Docker image, or a checkout);
# the worker's QUIRE_APP_DIR says where. `prefect deploy` keeps `{{ $NAME }}` of pull steps
# unresolved, so the worker resolves it from its own environment at run time.
APP_DIR_VARIABLE = "QUIRE_APP_DIR"

HEADER = f"""\
# Prefect project file: every Quire deployment, for `prefect --no-prompt deploy --all`.
#
# GENERATED from deployments/catalog.py by `{RENDER_COMMAND}`: edit the catalog, then run
# it again (tests/deployments/test_prefect_yaml.py fails while this file is not the rendering).
# The embedded mode (`quire worker`) serves the same catalog; tests/deployments/test_smoke.py
# deploys this file to a real `prefect server start` and runs an order through QA on a worker.
#
# Workers pull nothing: the code is already on the worker (the Docker image, or a checkout).
# {APP_DIR_VARIABLE} tells the worker where (/app in the image).
"""


def deployment_entry(deployment: Deployment) -> dict[str, Any]:
    """One `deployments:` entry of prefect.yaml."""
    entry: dict[str, Any] = {
        "name": deployment.name,
        "description": deployment.description,
        "entrypoint": deployment.entrypoint,
        "tags": list(deployment.tags),
        "enforce_parameter_schema": deployment.enforce_parameter_schema,
    }
    if deployment.parameters:
        entry["parameters"] = dict(deployment.parameters)
    entry["work_pool"] = {"name": WORK_POOL, "work_queue_name": "default", "job_variables": {}}
    if deployment.concurrency_limit is not None:
        entry["concurrency_limit"] = deployment.concurrency_limit
    if deployment.triggers:
        entry["triggers"] = [dict(trigger) for trigger in deployment.triggers]
    entry["schedules"] = (
        [{"cron": deployment.cron, "timezone": deployment.timezone, "active": True}]
        if deployment.cron
        else []
    )
    return entry


def project() -> dict[str, Any]:
    """prefect.yaml as data."""
    return {
        "name": "quire",
        "prefect-version": prefect.__version__,
        "pull": [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": f"{{{{ ${APP_DIR_VARIABLE} }}}}"
                }
            }
        ],
        "deployments": [deployment_entry(d) for d in CATALOG],
    }


def render() -> str:
    """prefect.yaml's text: the header, then `project()` as YAML."""
    body = yaml.safe_dump(project(), sort_keys=False, width=88, default_flow_style=False)
    return HEADER + "\n" + body


def write(path: Path = PREFECT_YAML) -> bool:
    """Write the rendering to `path`; whether that changed it."""
    text = render()
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def is_current(path: Path = PREFECT_YAML) -> bool:
    return path.exists() and path.read_text() == render()
