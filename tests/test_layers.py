"""The layers, as the README's layout section draws them: imports point down only.

    deployments/                 the command line, the deployment catalog, the demo
    api/        flows/           HTTP; Prefect flows (the business processes)
       |        tasks/           Prefect tasks (retries, caching) around domain steps
       v          v
    domains:    quire/qa  ->  quire/orders, ledger      (plain Python: no FastAPI, no Prefect)
                quire/payroll  ->  ledger
    kernel:     quire/ root modules, quire/people, quire/auth, quire/events, quire/audit

Read from the code's own import statements (every module, function-level imports included), so a
new module that leans the wrong way fails here rather than in a review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrations import MODEL_MODULES

ROOT = Path(__file__).resolve().parent.parent

KERNEL_PACKAGES = ("quire.people", "quire.auth", "quire.events", "quire.audit")
DOMAINS = (
    "quire.orders",
    "quire.qa",
    "quire.payroll",
    "quire.reconciliation",
    "quire.lifecycle",
    "ledger",
)

# Which domains each domain may use. Orders carry what they ask of QA (`quire.qa.config`, a leaf
# module that imports nothing of orders); QA runs on orders and posts to the ledger; payroll pays
# out of the ledger; reconciliation matches the bank's statements with payroll's payouts and the
# ledger and settles them; lifecycle holds a leaver's payouts through payroll; the ledger knows
# only the kernel.
DOMAIN_USES: dict[str, tuple[str, ...]] = {
    "ledger": (),
    "quire.orders": ("quire.qa.config",),
    "quire.qa": ("quire.orders", "ledger"),
    "quire.payroll": ("ledger",),
    "quire.reconciliation": ("quire.payroll", "ledger"),
    "quire.lifecycle": ("quire.payroll",),
}
FRAMEWORKS = ("fastapi", "starlette", "prefect", "prefect_sqlalchemy", "uvicorn")
TOP = ("api", "flows", "tasks", "deployments", "bench", "tests", "migrations")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*packages: str) -> Iterator[tuple[str, Path]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield module_name(path), path


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def layer_of(module: str) -> str:
    for domain in DOMAINS:
        if within(module, domain):
            return domain
    if within(module, "quire"):
        return "kernel"
    return module.split(".")[0]


def test_the_kernel_imports_no_domain_and_no_framework():
    wrong = {
        (module, imported)
        for module, path in modules("quire")
        if layer_of(module) == "kernel"
        for imported in imports(path)
        if within(imported, *DOMAINS, *TOP, *FRAMEWORKS)
    }
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("domain", DOMAINS)
def test_a_domain_uses_the_kernel_and_only_the_domains_it_is_drawn_on(domain):
    others = tuple(d for d in DOMAINS if d != domain)
    wrong = {
        (module, imported)
        for module, path in modules(*domain.split(".")[:1])
        if layer_of(module) == domain
        for imported in imports(path)
        if within(imported, *others, *TOP, *FRAMEWORKS)
        and not within(imported, *DOMAIN_USES[domain])
    }
    assert not wrong, sorted(wrong)


# The floors above the domains, and what each must never import (the floors above it). `api/`
# never imports flows, tasks or the deployments: it reaches Prefect as a client.
ABOVE: dict[str, tuple[str, ...]] = {
    "tasks": ("flows", "api", "deployments"),
    "flows": ("api", "deployments"),
    "api": ("flows", "tasks", "deployments"),
}


@pytest.mark.parametrize("floor", ABOVE)
def test_a_floor_does_not_reach_up(floor):
    wrong = {
        (module, imported)
        for module, path in modules(floor)
        for imported in imports(path)
        if within(imported, *ABOVE[floor])
    }
    assert not wrong, sorted(wrong)


def test_every_module_that_maps_tables_is_known_to_the_migrations():
    """Autogenerate and the migrations-match-models test see only the modules listed there."""
    mapping = set()
    for module, path in modules("quire", "ledger"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id == "Base" for base in node.bases
            ):
                mapping.add(module)
    assert mapping == set(MODEL_MODULES)
