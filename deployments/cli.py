"""`quire`: the operator's command line."""

from __future__ import annotations

import argparse
import sys

from quire.settings import get_settings


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

    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
