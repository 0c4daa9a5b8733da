"""`quire`: the operator's command line."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import TYPE_CHECKING

from quire.settings import get_settings

if TYPE_CHECKING:
    from quire.db import Database

DEAD_LETTER_PAGE = 200


def _database():  # type: ignore[no-untyped-def]
    from quire.db import Database

    settings = get_settings()
    return Database(settings.effective_database_url)


def cmd_migrate(_: argparse.Namespace) -> int:
    from migrations.upgrade import upgrade

    settings = get_settings()
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = _database()
    upgrade(database)
    print(f"database at head: {database.url.render_as_string(hide_password=True)}")
    database.dispose()
    return 0


def cmd_seed_demo(_: argparse.Namespace) -> int:
    from deployments.demo_tenant import DEMO_PASSWORD, DEMO_TENANT, PEOPLE, seed_demo

    database = _database()
    created = seed_demo(database)
    database.dispose()
    print("demo tenant created" if created else "demo tenant already present")
    print(f"  tenant: {DEMO_TENANT}   password for everyone: {DEMO_PASSWORD}")
    for email, _, roles, _ in PEOPLE:
        print(f"  {email:<24} {', '.join(roles)}")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    # Forwarded headers are believed only from the proxies QUIRE_FORWARDED_ALLOW_IPS names:
    # uvicorn's own default trusts loopback, letting any local client choose its address.
    proxies = settings.trusted_proxies
    uvicorn.run(
        "api.app:app_from_env",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        workers=args.workers,
        log_config=None,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or [],
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main command: the marketplace -> QA -> ledger path, end to end."""
    cmd_migrate(args)
    cmd_seed_demo(args)
    from deployments.demo import run

    return run(exit_when_done=args.exit)


def cmd_worker(args: argparse.Namespace) -> int:
    """Serve every Prefect deployment from this process (the embedded mode)."""
    from deployments.worker import main as serve_all

    serve_all(limit=args.limit, schedules=not args.no_schedules)
    return 0


def cmd_deployments_render(args: argparse.Namespace) -> int:
    """Write prefect.yaml from the deployment catalog; with --check, only say whether it is."""
    from pathlib import Path

    from deployments.prefect_yaml import PREFECT_YAML, RENDER_COMMAND, is_current, write

    path = Path(args.output) if args.output else PREFECT_YAML
    if args.check:
        if is_current(path):
            print(f"{path} is the rendering of deployments/catalog.py")
            return 0
        print(f"{path} is not the rendering of deployments/catalog.py: run `{RENDER_COMMAND}`")
        return 1
    print(f"{path} {'written' if write(path) else 'already current'}")
    return 0


def cmd_payroll(args: argparse.Namespace) -> int:
    """`quire payroll run|show` (deployments/payroll_cli.py)."""
    database = _database()
    try:
        return int(args.payroll_func(args, database) or 0)
    finally:
        database.dispose()


# --- lifecycle: the dead-letter queue and the connections' keys --------------------------------


def _tenants(database: Database, slug: str | None) -> list[tuple[uuid.UUID, str]]:
    """(id, slug) of the tenant `slug` names (SystemExit if none), or of every tenant."""
    from sqlalchemy import select

    from quire.people.models import Tenant

    with database.session() as session:
        query = select(Tenant.id, Tenant.slug).order_by(Tenant.slug)
        found = [
            (tenant_id, name)
            for tenant_id, name in session.execute(
                query if slug is None else query.where(Tenant.slug == slug)
            )
        ]
    if slug is not None and not found:
        raise SystemExit(f"no tenant {slug!r}")
    return found


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_dead_letters_list(args: argparse.Namespace) -> int:
    """Every open dead letter (or one tenant's), oldest first, as a table."""
    from quire.lifecycle import dead_letters
    from quire.people.actor import Actor

    database = _database()
    rows: list[tuple[str, ...]] = []
    try:
        for tenant_id, slug in _tenants(database, args.tenant):
            after = None
            while True:
                with database.session(tenant_id) as session:
                    page = dead_letters.list_open(
                        session, Actor.system(tenant_id), after=after, limit=DEAD_LETTER_PAGE
                    )
                rows += [
                    (str(x.id), slug, str(x.run_id), x.step_id, x.kind, str(x.attempts), x.error)
                    for x in page
                ]
                if len(page) < DEAD_LETTER_PAGE:
                    break
                after = page[-1].id
    finally:
        database.dispose()
    if not rows:
        print("no open dead letters")
        return 0
    header = ("id", "tenant", "run", "step", "kind", "attempts", "error")
    table = [header, *((*row[:-1], _one_line(row[-1], 80)) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    """Replay a dead letter and start its run's flow run, as `POST /dead-letters/{id}/replay`
    does (the same idempotency key): the steps that succeeded stay done."""
    from prefect.settings import PREFECT_API_URL

    from quire.errors import DomainError, Unavailable
    from quire.lifecycle import dead_letters, service
    from quire.people.actor import Actor

    settings = get_settings()
    database = _database()
    try:
        [(tenant_id, slug)] = _tenants(database, args.tenant)
        with database.session(tenant_id, write=True) as session:
            run = service.replay_dead_letter(session, Actor.system(tenant_id), args.id)
            run_id, event_id = run.id, run.event_id
            if not PREFECT_API_URL.value():  # nothing could start it: undo the replay
                raise Unavailable("no Prefect server: set PREFECT_API_URL; the letter stays open")
    except DomainError as refused:
        print(f"not replayed: {refused.message}")
        return 2
    finally:
        database.dispose()
    from prefect.deployments import run_deployment

    try:
        flow_run = run_deployment(
            settings.lifecycle_deployment,
            parameters={"tenant": slug, "event_id": str(event_id)},
            idempotency_key=dead_letters.replay_key(run_id, args.id),
            timeout=0,
            as_subflow=False,
            tags=["quire", "lifecycle"],
        )
    except Exception as exc:  # Prefect's client raises many kinds: each is "not started"
        print(f"run {run_id} is pending again, but its flow run could not be started: {exc}")
        return 3
    print(f"dead letter {args.id} replayed: run {run_id}, flow run {flow_run.id}")
    return 0


def cmd_lifecycle_rotate_secrets(_: argparse.Namespace) -> int:
    """Re-seal every connection with the keyring's first key (after putting a new key first in
    QUIRE_SECRETS_KEYS); the old key may be dropped once this is done."""
    from quire.lifecycle import connections
    from quire.lifecycle.secrets import Keyring, UnreadableSecret

    keyring = Keyring.from_settings(get_settings())
    database = _database()
    try:
        count = connections.rotate(database, keyring)
    except UnreadableSecret as exc:
        print(f"stopped: {exc}")
        return 1
    finally:
        database.dispose()
    print(f"{count} connection(s) re-sealed with key {keyring.current_key_id!r}")
    return 0


def add_lifecycle_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dead = sub.add_parser("dead-letters", help="lifecycle runs parked with a step out of retries")
    dead_sub = dead.add_subparsers(dest="dead_letters_command", required=True)
    listing = dead_sub.add_parser("list", help="the open dead letters, oldest first")
    listing.add_argument("--tenant", default=None, help="one tenant's (its slug)")
    listing.set_defaults(func=cmd_dead_letters_list)
    replay = dead_sub.add_parser("replay", help="replay one and start its run's flow run")
    replay.add_argument("id", type=int, help="the dead letter's id")
    replay.add_argument("--tenant", required=True, help="the tenant's slug")
    replay.set_defaults(func=cmd_dead_letters_replay)
    lifecycle = sub.add_parser("lifecycle", help="lifecycle automations")
    lifecycle_sub = lifecycle.add_subparsers(dest="lifecycle_command", required=True)
    lifecycle_sub.add_parser(
        "rotate-secrets", help="re-seal every connection with the current key"
    ).set_defaults(func=cmd_lifecycle_rotate_secrets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="upgrade the database to the latest schema").set_defaults(
        func=cmd_migrate
    )
    sub.add_parser("seed-demo", help="create the demo tenant and people").set_defaults(
        func=cmd_seed_demo
    )
    api = sub.add_parser("api", help="serve the marketplace API")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument("--workers", type=int, default=1)
    api.set_defaults(func=cmd_api)

    demo = sub.add_parser(
        "demo", help="run the marketplace -> QA -> ledger path end to end on the embedded defaults"
    )
    demo.add_argument("--exit", action="store_true", help="stop after the summary")
    demo.set_defaults(func=cmd_demo)

    worker = sub.add_parser("worker", help="serve every Prefect deployment from this process")
    worker.add_argument("--limit", type=int, default=8, help="flow runs at once")
    worker.add_argument(
        "--no-schedules", action="store_true", help="serve on demand only (no cron schedules)"
    )
    worker.set_defaults(func=cmd_worker)

    deployments = sub.add_parser("deployments", help="the deployment catalog")
    deployments_sub = deployments.add_subparsers(dest="deployments_command", required=True)
    render = deployments_sub.add_parser(
        "render", help="write prefect.yaml (server mode) from deployments/catalog.py"
    )
    render.add_argument("--check", action="store_true", help="exit 1 if prefect.yaml is stale")
    render.add_argument("--output", default=None, help="another path than ./prefect.yaml")
    render.set_defaults(func=cmd_deployments_render)

    from deployments.payroll_cli import add_commands

    add_commands(sub)
    sub.choices["payroll"].set_defaults(func=cmd_payroll)
    add_lifecycle_commands(sub)

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
