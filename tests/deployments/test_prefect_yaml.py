"""One deployment catalog: prefect.yaml (server mode) is rendered from deployments/catalog.py
(what the embedded `quire worker` serves), and the checked-in file is that rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prefect
import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from deployments.catalog import CATALOG, WORK_POOL, Deployment, runner_deployments
from deployments.cli import main as quire
from deployments.prefect_yaml import PREFECT_YAML, RENDER_COMMAND, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    return yaml.safe_load(render())


@pytest.fixture(scope="module")
def declared(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in rendered["deployments"]}


def by_name() -> dict[str, Deployment]:
    return {d.name: d for d in CATALOG}


def test_the_checked_in_prefect_yaml_is_the_rendering_of_the_catalog() -> None:
    assert PREFECT_YAML == ROOT / "prefect.yaml"
    assert PREFECT_YAML.read_text() == render(), (
        f"prefect.yaml is stale: run `{RENDER_COMMAND}` and commit the result"
    )


def test_render_check_says_whether_a_file_is_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "prefect.yaml"
    assert quire(["deployments", "render", "--check", "--output", str(target)]) == 1
    assert RENDER_COMMAND in capsys.readouterr().out
    assert quire(["deployments", "render", "--output", str(target)]) == 0
    assert target.read_text() == render()
    assert quire(["deployments", "render", "--check", "--output", str(target)]) == 0


def test_prefect_version_is_the_installed_one(rendered: dict[str, Any]) -> None:
    assert rendered["prefect-version"] == prefect.__version__


@pytest.mark.parametrize("name", [d.name for d in CATALOG])
def test_each_deployment_is_declared_as_the_catalog_says(
    name: str, declared: dict[str, dict[str, Any]]
) -> None:
    entry, deployment = declared[name], by_name()[name]
    assert entry["entrypoint"] == deployment.entrypoint
    assert entry["description"] == deployment.description
    assert entry["schedules"] == (
        [{"cron": deployment.cron, "timezone": deployment.timezone, "active": True}]
        if deployment.cron
        else []
    )
    assert entry.get("concurrency_limit") == deployment.concurrency_limit
    assert (entry.get("parameters") or {}) == deployment.parameters
    assert tuple(entry["tags"]) == deployment.tags
    assert entry["enforce_parameter_schema"] is True


@pytest.mark.parametrize("name", [d.name for d in CATALOG])
def test_entrypoint_loads_the_catalog_flow(name: str) -> None:
    """Relative to the project root, as a worker resolves it after the pull step's chdir."""
    path, _, function = by_name()[name].entrypoint.partition(":")
    assert (ROOT / path).is_file()
    flow = load_flow_from_entrypoint(str(ROOT / path) + ":" + function)
    assert flow.name == by_name()[name].flow.name


def test_the_embedded_mode_serves_the_same_schedules_and_parameters() -> None:
    served = {d.name: d for d in runner_deployments()}
    assert sorted(served) == sorted(by_name())
    for name, deployment in by_name().items():
        crons = [s.schedule.cron for s in served[name].schedules or []]
        assert crons == ([deployment.cron] if deployment.cron else [])
        assert served[name].parameters == deployment.parameters
        assert served[name].enforce_parameter_schema is True
    assert all(not d.schedules for d in runner_deployments(schedules=False))  # on demand only


def test_every_deployment_runs_on_the_quire_pool_from_the_app_directory(
    rendered: dict[str, Any], declared: dict[str, dict[str, Any]]
) -> None:
    """One work pool; the pull step changes into QUIRE_APP_DIR, resolved by the worker at run
    time (prefect deploy keeps `{{ $NAME }}` placeholders of pull steps unresolved)."""
    assert {d["work_pool"]["name"] for d in declared.values()} == {WORK_POOL}
    [step] = rendered["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $QUIRE_APP_DIR }}"}
    }
    assert not any("pull" in d for d in declared.values()), "a deployment overrides the pull"
