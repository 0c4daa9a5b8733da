"""prefect.yaml (server mode, `prefect deploy --all`) and deployments/catalog.py (the embedded
`quire worker`) declare the same deployments, and prefect.yaml's entrypoints load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prefect
import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from deployments.catalog import CATALOG, Deployment

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def declared(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in project["deployments"]}


def by_name() -> dict[str, Deployment]:
    return {d.name: d for d in CATALOG}


def test_same_deployments_in_both(declared: dict[str, dict[str, Any]]) -> None:
    assert sorted(declared) == sorted(by_name())


def test_prefect_version_is_the_installed_one(project: dict[str, Any]) -> None:
    assert project["prefect-version"] == prefect.__version__


@pytest.mark.parametrize("name", [d.name for d in CATALOG])
def test_entrypoint_loads_the_catalog_flow(name: str, declared: dict[str, dict[str, Any]]) -> None:
    """Relative to the project root, as a worker resolves it after the pull step's chdir."""
    entry = declared[name]["entrypoint"]
    assert entry == by_name()[name].entrypoint
    path, _, function = entry.partition(":")
    assert (ROOT / path).is_file()
    flow = load_flow_from_entrypoint(str(ROOT / path) + ":" + function)
    assert flow.name == by_name()[name].flow.name


@pytest.mark.parametrize("name", [d.name for d in CATALOG])
def test_schedules_limits_parameters_and_tags_agree(
    name: str, declared: dict[str, dict[str, Any]]
) -> None:
    yaml_deployment, deployment = declared[name], by_name()[name]
    crons = [(s["cron"], s.get("timezone", "UTC")) for s in yaml_deployment.get("schedules") or []]
    assert crons == ([(deployment.cron, deployment.timezone)] if deployment.cron else [])
    assert yaml_deployment.get("concurrency_limit") == deployment.concurrency_limit
    assert (yaml_deployment.get("parameters") or {}) == deployment.parameters
    assert tuple(yaml_deployment.get("tags") or ()) == deployment.tags
    assert yaml_deployment.get("enforce_parameter_schema") is True


def test_every_deployment_runs_on_the_quire_pool_from_the_app_directory(
    project: dict[str, Any], declared: dict[str, dict[str, Any]]
) -> None:
    """One work pool; the pull step changes into QUIRE_APP_DIR, resolved by the worker at run
    time (prefect deploy keeps `{{ $NAME }}` placeholders of pull steps unresolved)."""
    assert {d["work_pool"]["name"] for d in declared.values()} == {"quire"}
    [step] = project["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $QUIRE_APP_DIR }}"}
    }
    assert not any("pull" in d for d in declared.values()), "a deployment overrides the pull"
