"""docker-compose.yml, Dockerfile and .dockerignore agree with the code.

No Docker engine runs where the tests run, so the container definitions are checked by
construction: every `quire` command they run exists and every `prefect` command parses in the
installed Prefect CLI, every environment name they set is a `Settings` field, a Prefect setting
or a variable prefect.yaml reads, the ports line up, the database URLs reach their PostgreSQL
services, the worker polls prefect.yaml's work pool from where the image holds the source, and
the build context holds what the image installs. (tests/deployments/test_smoke.py runs the same
Prefect server, deploy, worker and API as processes.)

Compose variables (`${NAME:-default}`) are resolved as `docker compose` would, with only
`OPERATOR_ENV` (what an operator puts in `.env`) in the environment.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator, Mapping
from fnmatch import fnmatchcase
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import prefect
import prefect.settings
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from pydantic import AliasChoices
from sqlalchemy.engine import make_url

from api.app import create_app
from deployments import cli
from quire.db import normalize_url
from quire.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
PREFECT_YAML = ROOT / "prefect.yaml"
LOCK = ROOT / "requirements.lock"

API = "api"
POSTGRES = "postgres"
API_PORT = 8000
PREFECT_PORT = 4200
# What the operator must supply (in the shell or .env) before `docker compose up`.
OPERATOR_ENV = {"QUIRE_JWT_SECRET": "operator-supplied-secret-0123456789abcdef0123456789"}


# --- Compose variable interpolation --------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_]\w*))"
)


class MissingVariable(LookupError):
    """A `${NAME:?message}` variable was not provided: compose refuses to run."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Resolve compose variables in every string of a parsed compose document."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["braced"] or match["named"], match["op"] or "", match["arg"] or ""
        current = env.get(name)
        present = bool(current) if op.startswith(":") else current is not None
        if op.endswith("-"):
            return current if present and current is not None else arg
        if op.endswith("?"):
            if not present or current is None:
                raise MissingVariable(f"{name}: {arg}")
            return current
        if op.endswith("+"):
            return arg if present else ""
        return current or ""

    return _VARIABLE.sub(replace, value)


# --- Reading the files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw_compose, OPERATOR_ENV)


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def instruction_args(keyword: str) -> list[str]:
    return [arguments for kw, arguments in dockerfile_instructions() if kw == keyword]


def image_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in instruction_args("ENV"):
        words = shlex.split(arguments)
        if "=" not in words[0]:  # legacy `ENV NAME value`
            env[words[0]] = " ".join(words[1:])
            continue
        env.update(word.split("=", 1) for word in words)
    return env


def image_command() -> list[str]:
    [*_, cmd] = instruction_args("CMD")
    return json.loads(cmd) if cmd.startswith("[") else ["/bin/sh", "-c", cmd]


def exposed_ports() -> set[int]:
    return {int(word.split("/")[0]) for args in instruction_args("EXPOSE") for word in args.split()}


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def quire_services(compose: dict[str, Any]) -> list[str]:
    """Services built from this repository (the image the Dockerfile describes)."""
    return [name for name, service in services(compose).items() if "build" in service]


def database_services(compose: dict[str, Any]) -> list[str]:
    """Quire services that work on Quire's database: they run `quire` commands, or a Prefect
    worker (whose flow runs do). The deploy one-shot only talks to Prefect's API."""
    return [
        name
        for name in quire_services(compose)
        if service_invocations(compose, name)
        or any(parsed == PREFECT_WORKER_START for parsed, _ in prefect_calls(compose, name))
    ]


def postgres_services(compose: dict[str, Any]) -> list[str]:
    return [
        name
        for name, service in services(compose).items()
        if str(service.get("image", "")).startswith("postgres:")
    ]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def container_environment(compose: dict[str, Any], name: str) -> dict[str, str]:
    """What a Quire container sees: the image's ENV overridden by the service's environment."""
    return {**image_environment(), **environment(services(compose)[name])}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency name -> condition (the short list form means `service_started`)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def named_volumes(compose: dict[str, Any], name: str) -> dict[str, str]:
    """A service's mounts of named (top-level) volumes: container path -> volume."""
    mounts = {}
    for volume in services(compose)[name].get("volumes") or []:
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, _, target = str(volume).partition(":")
            target = target.split(":")[0]
        if source in (compose.get("volumes") or {}):
            mounts[target] = source
    return mounts


def port_mappings(service: dict[str, Any]) -> dict[int, int | None]:
    """Published ports: container port -> host port (None: an ephemeral host port)."""
    mappings: dict[int, int | None] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            mappings[int(entry["target"])] = int(published) if published else None
            continue
        *host, target = str(entry).split("/")[0].split(":")
        mappings[int(target)] = int(host[-1]) if host and host[-1] else None
    return mappings


def healthcheck_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    [url] = re.findall(r"https?://[^\s'\"]+", " ".join(test) if isinstance(test, list) else test)
    return url


def image_workdir() -> str:
    workdir = "/"
    for keyword, arguments in dockerfile_instructions():
        if keyword == "WORKDIR":
            workdir = str(Path(workdir, arguments))
    return workdir


def image_source_dirs() -> set[str]:
    """Where the image holds the source tree: destinations of `COPY . <dest>`."""
    source_copies, workdir = set(), "/"
    for keyword, arguments in dockerfile_instructions():
        if keyword == "WORKDIR":
            workdir = str(Path(workdir, arguments))
        elif keyword == "COPY":
            *sources, destination = [w for w in shlex.split(arguments) if not w.startswith("--")]
            if "." in sources:
                source_copies.add(str(Path(workdir, destination)))
    return source_copies


# --- What the commands run -----------------------------------------------------------------------

_SHELL_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}
_SHELLS = {"sh", "bash", "dash", "ash"}


def _argv(command: str | list[str] | None) -> list[str]:
    """A compose `command`/`entrypoint` as argv (compose splits a string like a shell would)."""
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _script_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script: split at operators and line ends."""
    lexer = shlex.shlex(
        script.replace("\\\n", " ").replace("\n", " ; "), posix=True, punctuation_chars=True
    )
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in _SHELL_OPERATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for argv in commands if argv for command in simple_commands(argv)]


def simple_commands(argv: list[str]) -> list[list[str]]:
    """The programs an argv runs with their arguments: itself, or, for `sh -c '<script>'`
    (the shell form: `sh -c "quire migrate && ..."`), each command of the script."""
    while argv and (argv[0] == "exec" or re.fullmatch(r"[A-Za-z_]\w*=.*", argv[0])):
        argv = argv[1:]  # `exec quire api`, `NAME=value quire api`
    if argv and Path(argv[0]).name in _SHELLS:
        for index, word in enumerate(argv[1:], start=1):
            if not word.startswith("-"):
                break
            if "c" in word[1:] and index + 1 < len(argv):
                return _script_commands(argv[index + 1])
    return [argv] if argv else []


def invocations(command: str | list[str] | None, program: str = "quire") -> list[list[str]]:
    """The arguments of each `<program> ...` call (quire or prefect) in a command, in order."""
    return [argv[1:] for argv in simple_commands(_argv(command)) if Path(argv[0]).name == program]


def quire_invocations(command: str | list[str] | None) -> list[list[str]]:
    return invocations(command, "quire")


def service_invocations(
    compose: dict[str, Any], name: str, program: str = "quire"
) -> list[list[str]]:
    """The calls a service's container makes; a Quire service without `command` runs the CMD."""
    service = services(compose)[name]
    command = service.get("command")
    if command is None and "build" in service:
        command = image_command()
    return invocations(_argv(service.get("entrypoint")) + _argv(command), program)


def parse_prefect(arguments: list[str]) -> tuple[str, dict[str, Any]]:
    """`prefect <arguments>` as the installed Prefect CLI parses it, without running it.

    Returns the command (`module:function`, e.g. `prefect.cli.worker:start`) and its bound
    arguments; an unknown subcommand or option, or a missing argument, raises. (Prefect's CLI is
    a cyclopts app: the root app takes session flags such as --no-prompt, then dispatches.)
    """
    from prefect.cli._app import _app, _normalize_top_level_flags

    quiet = {"exit_on_error": False, "print_error": False}
    _, root, _ = _app.meta.parse_args(_normalize_top_level_flags(arguments), **quiet)
    command, bound, _ = _app.parse_args(root.arguments.get("tokens", ()), **quiet)
    return f"{command.__module__}:{command.__name__}", dict(bound.arguments)


PREFECT_SERVER_START = "prefect.cli.server:start"
PREFECT_WORKER_START = "prefect.cli.worker:start"
PREFECT_DEPLOY = "prefect.cli.deploy._commands:deploy"
PREFECT_WORK_POOL_CREATE = "prefect.cli.work_pool:create"


def prefect_calls(compose: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    """A service's `prefect` calls that parse (the others fail their own test)."""
    calls = []
    for arguments in service_invocations(compose, name, "prefect"):
        with contextlib.suppress(Exception):
            calls.append(parse_prefect(arguments))
    return calls


def services_running(compose: dict[str, Any], command: str) -> list[str]:
    """Services whose command runs the given Prefect CLI command."""
    return [
        name
        for name in services(compose)
        if any(parsed == command for parsed, _ in prefect_calls(compose, name))
    ]


def the_service_running(compose: dict[str, Any], command: str) -> str:
    found = services_running(compose, command)
    assert len(found) == 1, f"expected one service running {command}, found {found}"
    return found[0]


def prefect_arguments(compose: dict[str, Any], name: str, command: str) -> dict[str, Any]:
    [arguments] = [args for parsed, args in prefect_calls(compose, name) if parsed == command]
    return arguments


def _cli_help(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def cli_subcommands() -> dict[str, set[str]]:
    """`quire` subcommand -> the options it accepts, read from the real parser's help."""
    choices = re.search(r"\{([\w,-]+)\}", _cli_help())
    assert choices, "quire --help lists no subcommands"
    return {
        sub: set(re.findall(r"(?<![\w-])--[a-z][\w-]*", _cli_help(sub)))
        for sub in choices[1].split(",")
    }


def api_listen_address(compose: dict[str, Any], settings: Settings) -> tuple[str, int]:
    """Where `quire api` binds in the api container: its flags, else the settings."""
    [call] = [call for call in service_invocations(compose, API) if call[:1] == ["api"]]
    flags: dict[str, str] = {}
    for word, following in zip(call, [*call[1:], ""], strict=True):
        if word.startswith("--"):
            name, has_value, value = word.partition("=")
            flags[name] = value if has_value else following
    return flags.get("--host", settings.api_host), int(flags.get("--port", settings.api_port))


# --- Settings ------------------------------------------------------------------------------------


def setting_names() -> set[str]:
    """The environment names Settings reads: each field's validation alias."""
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        else:
            names.add(field_name.upper())
    return names


def is_quire_setting_name(name: str) -> bool:
    return name.startswith("QUIRE_") or name == "DATABASE_URL"


def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


_TEMPLATE_ENV = re.compile(r"\{\{\s*\$([A-Za-z_]\w*)\s*\}\}")


def prefect_yaml_variables() -> set[str]:
    """Environment names prefect.yaml reads (`{{ $NAME }}`, resolved where the step runs)."""
    return set(_TEMPLATE_ENV.findall(PREFECT_YAML.read_text()))


def resolve_template(value: str, env: Mapping[str, str]) -> str:
    """A prefect.yaml value as a worker resolves it from its environment."""

    def replace(match: re.Match[str]) -> str:
        assert match[1] in env, f"prefect.yaml reads ${match[1]}, which is not set"
        return env[match[1]]

    return _TEMPLATE_ENV.sub(replace, value)


def prefect_work_pools() -> set[str]:
    return {d["work_pool"]["name"] for d in prefect_yaml()["deployments"]}


@pytest.fixture
def prefect_settings_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[Mapping[str, str]], prefect.settings.Settings]:
    """Prefect's settings as a container would read them: from its environment alone."""

    def build(env: Mapping[str, str]) -> prefect.settings.Settings:
        for name in list(os.environ):
            if name.startswith("PREFECT_"):
                monkeypatch.delenv(name)
        # No profile of this machine's ~/.prefect leaks in.
        monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "no-profiles.toml"))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return prefect.settings.Settings()

    return build


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> Callable[[Mapping[str, str]], Settings]:
    """Build Settings exactly as a container would: from its environment alone."""

    def build(env: Mapping[str, str]) -> Settings:
        for name in setting_names():
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return Settings(_env_file=None)

    return build


# --- .dockerignore -------------------------------------------------------------------------------


def _dockerignore_rules() -> list[tuple[bool, list[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        rules.append((negated, pattern.lstrip("!").strip().strip("/").split("/")))
    return rules


def _matches(pattern: list[str], path: list[str]) -> bool:
    """Docker's rule: the pattern matches the path or one of its parent directories."""
    if not pattern:
        return True
    head, *rest = pattern
    if head == "**":
        return any(_matches(rest, path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], head) and _matches(rest, path[1:])


def excluded_from_build_context(path: str) -> bool:
    excluded = False
    for negated, pattern in _dockerignore_rules():
        if _matches(pattern, path.split("/")):
            excluded = not negated
    return excluded


def packaged_files(pyproject: dict[str, Any]) -> Iterator[str]:
    """Files under the top-level packages pyproject.toml installs (what the image runs)."""
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    for top in sorted(ROOT.iterdir()):
        if (
            top.is_dir()
            and top.name.isidentifier()  # a package, not e.g. quire.egg-info
            and any(fnmatchcase(top.name, pattern) for pattern in includes)
        ):
            for path in sorted(top.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    yield path.relative_to(ROOT).as_posix()


# === The command line ============================================================================


def test_quire_console_script_is_declared_in_pyproject(pyproject: dict[str, Any]) -> None:
    """The containers call `quire`: pyproject.toml installs it, pointing at deployments.cli.main."""
    target = pyproject["project"]["scripts"]["quire"]
    module, _, attribute = target.partition(":")
    assert getattr(import_module(module), attribute) is cli.main


def test_every_quire_container_runs_quire_or_prefect(compose: dict[str, Any]) -> None:
    for name in quire_services(compose):
        calls = service_invocations(compose, name) + service_invocations(compose, name, "prefect")
        assert calls, f"service {name} runs neither quire nor prefect"


def test_every_quire_command_the_containers_run_exists(
    compose: dict[str, Any], cli_subcommands: dict[str, set[str]]
) -> None:
    """Each `quire <subcommand> --flags` in a service or the image's CMD parses in the CLI."""
    calls = {f"image CMD: {image_command()}": quire_invocations(image_command())}
    for name in quire_services(compose):
        calls[f"service {name}"] = service_invocations(compose, name)
    assert any(calls.values()), "no container runs a quire command"

    for where, quire_calls in calls.items():
        for subcommand, *arguments in quire_calls:
            assert subcommand in cli_subcommands, f"{where}: no `quire {subcommand}`"
            flags = {word.split("=", 1)[0] for word in arguments if word.startswith("--")}
            unknown = flags - cli_subcommands[subcommand]
            assert not unknown, f"{where}: `quire {subcommand}` has no option {sorted(unknown)}"


def test_every_prefect_command_the_containers_run_parses(compose: dict[str, Any]) -> None:
    """Each `prefect ...` (server, work pool, deploy, worker) is a command of the installed
    Prefect CLI, with options it has: the same Prefect as requirements.lock and the images."""
    calls = {
        name: service_invocations(compose, name, "prefect")
        for name in services(compose)
        if service_invocations(compose, name, "prefect")
    }
    assert calls, "no container runs Prefect"
    for name, prefect_invocations in calls.items():
        for arguments in prefect_invocations:
            try:
                parse_prefect(arguments)
            except Exception as exc:  # cyclopts' errors say what is wrong
                pytest.fail(f"service {name}: `prefect {shlex.join(arguments)}`: {exc}")


def test_the_stack_runs_a_prefect_server_deploys_and_a_worker(compose: dict[str, Any]) -> None:
    """One Prefect server; the deployments are created, and flows run, from this repository's
    image (they load the flows' code)."""
    the_service_running(compose, PREFECT_SERVER_START)
    deploy = the_service_running(compose, PREFECT_DEPLOY)
    worker = the_service_running(compose, PREFECT_WORKER_START)
    assert {deploy, worker} <= set(quire_services(compose))
    assert prefect_arguments(compose, deploy, PREFECT_DEPLOY).get("deploy_all") is True
    assert services(compose)[deploy].get("restart") == "no", "deploy is a one-shot"


def test_migrations_complete_before_the_api_starts(compose: dict[str, Any]) -> None:
    """`quire migrate` runs first: in the api command, or in a one-shot service it waits for."""
    api_calls = [call[0] for call in service_invocations(compose, API)]
    assert "api" in api_calls
    migrated_in_command = "migrate" in api_calls[: api_calls.index("api")]
    migrated_by_dependency = any(
        condition == "service_completed_successfully"
        and any(call[:1] == ["migrate"] for call in service_invocations(compose, dependency))
        for dependency, condition in depends_on(services(compose)[API]).items()
    )
    assert migrated_in_command or migrated_by_dependency


# === Settings ====================================================================================


def test_quire_services_set_only_real_setting_names(compose: dict[str, Any]) -> None:
    """QUIRE_* and DATABASE_URL names in a Quire service or the image are Settings aliases, or
    variables prefect.yaml reads (QUIRE_APP_DIR)."""
    known = setting_names() | prefect_yaml_variables()
    sources = {"Dockerfile ENV": image_environment()}
    sources.update({name: environment(services(compose)[name]) for name in quire_services(compose)})
    unknown = [
        f"{where}: {name}"
        for where, env in sources.items()
        for name in env
        if is_quire_setting_name(name) and name not in known
    ]
    assert not unknown, f"not a setting in quire/settings.py: {unknown}"


def test_prefect_setting_names_are_real(compose: dict[str, Any]) -> None:
    """PREFECT_* names in any service or the image are settings prefect.settings knows (Prefect
    ignores a misspelt name silently)."""
    sources = {"Dockerfile ENV": image_environment()}
    sources.update({name: environment(service) for name, service in services(compose).items()})
    unknown = [
        f"{where}: {name}"
        for where, env in sources.items()
        for name in env
        if name.startswith("PREFECT_") and not hasattr(prefect.settings, name)
    ]
    assert not unknown, f"not a Prefect setting: {unknown}"


def test_prefect_settings_parse_in_every_container_that_runs_prefect(
    compose: dict[str, Any],
    prefect_settings_from: Callable[[Mapping[str, str]], prefect.settings.Settings],
) -> None:
    """Each value parses (a bad boolean or URL would stop the container at start)."""
    for name in services(compose):
        if name in quire_services(compose):
            prefect_settings_from(container_environment(compose, name))
        elif service_invocations(compose, name, "prefect"):
            prefect_settings_from(environment(services(compose)[name]))


def test_quire_containers_get_valid_settings_on_postgresql(
    compose: dict[str, Any], settings_from: Callable[[Mapping[str, str]], Settings]
) -> None:
    """The values parse as Settings, with a database URL the data layer accepts (no SQLite)."""
    for name in database_services(compose):
        settings = settings_from(container_environment(compose, name))
        url = normalize_url(settings.effective_database_url)
        assert url.get_backend_name() == "postgresql", name
        assert settings.jwt_secret is not None, f"{name}: would generate a per-container secret"


def test_jwt_secret_must_come_from_the_operator(raw_compose: dict[str, Any]) -> None:
    """The file ships no signing secret: compose stops with a message when it is not set."""
    for name in database_services(raw_compose):
        secret = environment(services(raw_compose)[name]).get("QUIRE_JWT_SECRET", "")
        assert re.fullmatch(r"\$\{QUIRE_JWT_SECRET:\?[^}]+\}", secret), name
    for name in quire_services(raw_compose):
        secret = environment(services(raw_compose)[name]).get("QUIRE_JWT_SECRET")
        assert secret is None or secret.startswith("${QUIRE_JWT_SECRET:?"), name
    with pytest.raises(MissingVariable, match="QUIRE_JWT_SECRET"):
        interpolate(raw_compose, {})


# === Ports =======================================================================================


def test_api_listens_on_all_interfaces_in_its_container(
    compose: dict[str, Any], settings_from: Callable[[Mapping[str, str]], Settings]
) -> None:
    """Bound to 127.0.0.1 (the Settings default) the published port would reach nothing."""
    settings = settings_from(container_environment(compose, API))
    host, _ = api_listen_address(compose, settings)
    assert host == "0.0.0.0"


def test_published_port_is_the_port_the_api_listens_on(
    compose: dict[str, Any], settings_from: Callable[[Mapping[str, str]], Settings]
) -> None:
    """The api port mapping's container side is QUIRE_API_PORT (or the --port flag)."""
    settings = settings_from(container_environment(compose, API))
    _, port = api_listen_address(compose, settings)
    targets = set()
    for entry in services(compose)[API].get("ports", []):
        if isinstance(entry, dict):
            targets.add(int(entry["target"]))
        else:
            targets.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    assert port in targets
    assert port == API_PORT, "the README and clients expect the API on 8000"
    assert port in exposed_ports(), "the Dockerfile EXPOSEs another port"


def test_api_healthcheck_probes_readiness_on_the_api_port(
    compose: dict[str, Any], settings_from: Callable[[Mapping[str, str]], Settings]
) -> None:
    """The healthcheck asks the API itself, on its port, at a GET route the app serves."""
    settings = settings_from(container_environment(compose, API))
    _, port = api_listen_address(compose, settings)
    test = services(compose)[API]["healthcheck"]["test"]
    [url] = re.findall(r"https?://[^\s'\"]+", " ".join(test) if isinstance(test, list) else test)
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost")
    assert parts.port == port
    assert parts.path == "/health/ready"
    operations = create_app(settings).openapi()["paths"].get(parts.path, {})
    assert "get" in operations, f"the API serves no GET {parts.path}"


def test_image_default_command_serves_the_api_on_the_exposed_port(
    settings_from: Callable[[Mapping[str, str]], Settings],
) -> None:
    """`docker run` of the bare image: `quire api` on 0.0.0.0 and the EXPOSEd port."""
    assert [call[0] for call in quire_invocations(image_command())] == ["api"]
    settings = settings_from(image_environment())
    assert settings.api_host == "0.0.0.0"
    assert settings.api_port in exposed_ports()


# === PostgreSQL ==================================================================================


def test_database_url_points_at_the_postgres_service(compose: dict[str, Any]) -> None:
    """postgresql+psycopg to the `postgres` service, with the credentials that service creates."""
    postgres = environment(services(compose)[POSTGRES])
    urls = {
        environment(services(compose)[name])["DATABASE_URL"] for name in database_services(compose)
    }
    assert len(urls) == 1, f"Quire services disagree on the database: {urls}"
    url = make_url(urls.pop())
    assert url.drivername == "postgresql+psycopg"
    assert url.host == POSTGRES
    assert url.port in (None, 5432)
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.database == postgres["POSTGRES_DB"]


def test_postgres_is_healthchecked_and_keeps_its_data_in_a_named_volume(
    compose: dict[str, Any],
) -> None:
    """pg_isready gates the dependants; each data directory survives `docker compose down`,
    on a volume of its own."""
    assert POSTGRES in postgres_services(compose)
    volumes = []
    for name in postgres_services(compose):
        postgres = services(compose)[name]
        assert "pg_isready" in " ".join(postgres["healthcheck"]["test"]), name
        volume = named_volumes(compose, name).get("/var/lib/postgresql/data")
        assert volume, f"{name}: the data directory is not on a named (top-level) volume"
        volumes.append(volume)
    assert len(set(volumes)) == len(volumes), f"PostgreSQL services share a volume: {volumes}"


def test_quire_services_wait_for_a_healthy_database(compose: dict[str, Any]) -> None:
    for name in database_services(compose):
        assert depends_on(services(compose)[name]).get(POSTGRES) == "service_healthy", name


# === Prefect =====================================================================================


PrefectSettingsFrom = Callable[[Mapping[str, str]], prefect.settings.Settings]


def prefect_server(compose: dict[str, Any]) -> str:
    return the_service_running(compose, PREFECT_SERVER_START)


def prefect_server_address(
    compose: dict[str, Any], prefect_settings_from: PrefectSettingsFrom
) -> tuple[str, int]:
    """Where `prefect server start` binds: its flags, else its settings."""
    server = prefect_server(compose)
    flags = prefect_arguments(compose, server, PREFECT_SERVER_START)
    settings = prefect_settings_from(environment(services(compose)[server]))
    return flags.get("host") or settings.server.api.host, int(
        flags.get("port") or settings.server.api.port
    )


def test_prefect_server_image_is_the_locked_prefect_version() -> None:
    """The server runs the Prefect the lock installs in the Quire image (client == server)."""
    locked = re.search(r"^prefect==(\S+)$", LOCK.read_text(), re.MULTILINE)
    assert locked, "prefect is not pinned in requirements.lock"
    assert locked[1] == prefect.__version__, "the .venv's prefect is not the locked one"
    compose = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), OPERATOR_ENV)
    image = services(compose)[prefect_server(compose)]["image"]
    tag = re.fullmatch(r"prefecthq/prefect:(\d+\.\d+\.\d+)-python(\d+\.\d+)", image)
    assert tag, f"not an official, pinned Prefect image: {image}"
    assert tag[1] == locked[1]
    [base] = instruction_args("FROM")
    assert base.startswith(f"python:{tag[2]}"), "server and image run different Pythons"


def test_prefect_server_has_its_own_postgresql_database(
    compose: dict[str, Any], prefect_settings_from: PrefectSettingsFrom
) -> None:
    """postgresql+asyncpg (installed with prefect) to a PostgreSQL service that is not Quire's,
    with the credentials that service creates; the server waits until it is healthy."""
    server = prefect_server(compose)
    settings = prefect_settings_from(environment(services(compose)[server]))
    connection_url = settings.server.database.connection_url
    assert connection_url is not None, "the Prefect server would use SQLite"
    url = make_url(connection_url.get_secret_value())
    assert url.drivername == "postgresql+asyncpg"
    import_module("asyncpg")
    assert url.host in postgres_services(compose), f"{url.host} is no PostgreSQL service"
    assert url.host != POSTGRES, "Prefect shares Quire's PostgreSQL server"
    database = environment(services(compose)[url.host])
    assert url.port in (None, 5432)
    assert url.username == database["POSTGRES_USER"]
    assert url.password == database["POSTGRES_PASSWORD"]
    assert url.database == database["POSTGRES_DB"]
    assert depends_on(services(compose)[server]).get(url.host) == "service_healthy"


def test_prefect_server_listens_on_all_interfaces_on_the_published_port(
    compose: dict[str, Any], prefect_settings_from: PrefectSettingsFrom
) -> None:
    host, port = prefect_server_address(compose, prefect_settings_from)
    assert host == "0.0.0.0"
    assert port == PREFECT_PORT
    assert port in port_mappings(services(compose)[prefect_server(compose)])


def test_prefect_server_healthcheck_probes_its_api(
    compose: dict[str, Any], prefect_settings_from: PrefectSettingsFrom
) -> None:
    _, port = prefect_server_address(compose, prefect_settings_from)
    parts = urlsplit(healthcheck_url(services(compose)[prefect_server(compose)]))
    assert parts.hostname in ("127.0.0.1", "localhost")
    assert parts.port == port
    assert parts.path == "/api/health"


def test_prefect_ui_calls_the_api_on_the_published_port(
    compose: dict[str, Any], prefect_settings_from: PrefectSettingsFrom
) -> None:
    """The UI runs in the operator's browser: its API URL is the host side of the mapping."""
    server = prefect_server(compose)
    _, port = prefect_server_address(compose, prefect_settings_from)
    ui_api = urlsplit(
        prefect_settings_from(environment(services(compose)[server])).server.ui.api_url or ""
    )
    assert ui_api.hostname in ("localhost", "127.0.0.1")
    assert ui_api.port == port_mappings(services(compose)[server])[port]
    assert ui_api.path == "/api"


def test_quire_containers_reach_the_prefect_server(
    compose: dict[str, Any], prefect_settings_from: PrefectSettingsFrom
) -> None:
    """The worker and the deploy take runs from / write deployments to the server; the API
    resumes suspended QA runs through it (`POST /orders/{id}/reviews`)."""
    server = prefect_server(compose)
    _, port = prefect_server_address(compose, prefect_settings_from)
    clients = {
        API,
        the_service_running(compose, PREFECT_WORKER_START),
        the_service_running(compose, PREFECT_DEPLOY),
    }
    for name in clients:
        api_url = prefect_settings_from(container_environment(compose, name)).api.url
        assert api_url, f"{name}: no PREFECT_API_URL (it would start a temporary server)"
        parts = urlsplit(api_url)
        assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
            "http",
            server,
            port,
            "/api",
        ), name
        assert depends_on(services(compose)[name]).get(server, "service_healthy") in (
            "service_healthy",
            "service_completed_successfully",
        ), f"{name} waits for {server} only until it starts, not until it is healthy"


def test_worker_polls_the_work_pool_prefect_yaml_deploys_to(compose: dict[str, Any]) -> None:
    """One pool in prefect.yaml; the deploy creates it (process type); the worker polls it."""
    [pool] = prefect_work_pools()
    worker = the_service_running(compose, PREFECT_WORKER_START)
    assert prefect_arguments(compose, worker, PREFECT_WORKER_START)["work_pool_name"] == pool
    deploy = the_service_running(compose, PREFECT_DEPLOY)
    pool_commands = [
        (parsed, arguments)
        for parsed, arguments in prefect_calls(compose, deploy)
        if parsed.startswith("prefect.cli.work_pool:")
    ]
    created = [args for parsed, args in pool_commands if parsed == PREFECT_WORK_POOL_CREATE]
    assert created, f"{deploy} does not create the work pool"
    assert all(args["name"] == pool for _, args in pool_commands), pool_commands
    assert all(args.get("type") == "process" for args in created)


def test_deploy_runs_where_the_image_holds_prefect_yaml(compose: dict[str, Any]) -> None:
    """`prefect deploy --all` reads ./prefect.yaml, whose entrypoints are relative to it."""
    deploy = the_service_running(compose, PREFECT_DEPLOY)
    working_dir = services(compose)[deploy].get("working_dir") or image_workdir()
    assert working_dir in image_source_dirs()
    assert not excluded_from_build_context("prefect.yaml")
    for deployment in prefect_yaml()["deployments"]:
        path = deployment["entrypoint"].partition(":")[0]
        assert (ROOT / path).is_file(), path
        assert not excluded_from_build_context(path), path


def test_worker_runs_flows_from_where_the_image_holds_the_source(compose: dict[str, Any]) -> None:
    """prefect.yaml's pull step changes into `{{ $QUIRE_APP_DIR }}`, resolved from the worker's
    environment when a run starts: the image's WORKDIR, where `COPY . .` put the source tree."""
    worker = the_service_running(compose, PREFECT_WORKER_START)
    env = container_environment(compose, worker)
    assert env.get("QUIRE_APP_DIR") == image_workdir()
    directories = [
        resolve_template(spec["directory"], env)
        for step in prefect_yaml().get("pull") or []
        for name, spec in step.items()
        if name.endswith("set_working_directory")
    ]
    assert directories, "prefect.yaml has no set_working_directory pull step"
    assert set(directories) <= image_source_dirs(), f"the source is at {image_source_dirs()}"


def test_worker_starts_after_the_schema_the_server_and_the_deployments(
    compose: dict[str, Any],
) -> None:
    worker = the_service_running(compose, PREFECT_WORKER_START)
    deps = depends_on(services(compose)[worker])
    [migrate] = [
        name for name in services(compose) if ["migrate"] in service_invocations(compose, name)
    ]
    assert deps.get(migrate) == "service_completed_successfully"
    assert (
        deps.get(the_service_running(compose, PREFECT_DEPLOY)) == "service_completed_successfully"
    )
    assert deps.get(prefect_server(compose)) == "service_healthy"


def test_prefect_writes_only_under_the_data_directory(
    compose: dict[str, Any], prefect_settings_from: PrefectSettingsFrom
) -> None:
    """The source tree is read-only for the runtime user: Prefect's home and the flow runs'
    persisted results live in QUIRE_DATA_DIR, the directory the image gives that user."""
    for name in quire_services(compose):
        data_dir = Path(Settings.model_validate(container_environment(compose, name)).data_dir)
        settings = prefect_settings_from(container_environment(compose, name))
        assert Path(settings.home).is_relative_to(data_dir), name
        assert Path(settings.results.local_storage_path).is_relative_to(data_dir), name


def test_worker_keeps_persisted_results_on_a_volume(
    compose: dict[str, Any], prefect_settings_from: PrefectSettingsFrom
) -> None:
    """A QA run suspended for a review resumes in a new process that reads the finished steps'
    results back: they must survive the worker container being recreated."""
    worker = the_service_running(compose, PREFECT_WORKER_START)
    results = Path(
        prefect_settings_from(container_environment(compose, worker)).results.local_storage_path
    )
    mounts = named_volumes(compose, worker)
    assert any(results.is_relative_to(target) for target in mounts), (results, mounts)


# === The image ===================================================================================


def test_dockerfile_installs_the_lock_then_the_project_without_dependencies() -> None:
    """Exact versions from requirements.lock; the project adds nothing outside it."""
    instructions = dockerfile_instructions()

    def first(keyword: str, pattern: str) -> int:
        found = [i for i, (kw, args) in enumerate(instructions) if kw == keyword]
        found = [i for i in found if re.search(pattern, instructions[i][1])]
        assert found, f"no {keyword} matching {pattern!r}"
        return found[0]

    copy_lock = first("COPY", r"\brequirements\.lock\b")
    install_lock = first("RUN", r"pip install\b[^&;]*\s-r\s+\S*requirements\.lock\b")
    install_project = first("RUN", r"pip install\b[^&;]*\s--no-deps\b")
    assert copy_lock < install_lock < install_project


def test_dockerfile_base_image_satisfies_requires_python(pyproject: dict[str, Any]) -> None:
    [base] = instruction_args("FROM")
    version = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim\S*", base)
    assert version, f"unexpected base image {base}"
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(version[1])


def test_image_runs_as_a_non_root_user() -> None:
    users = instruction_args("USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_build_context_holds_what_the_image_installs(pyproject: dict[str, Any]) -> None:
    """Nothing the Dockerfile copies or pip installs is dropped by .dockerignore."""
    needed = ["pyproject.toml", "requirements.lock", "README.md", *packaged_files(pyproject)]
    assert "migrations/script.py.mako" in needed
    for arguments in instruction_args("COPY"):
        *sources, _ = [word for word in shlex.split(arguments) if not word.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            if source != ".":
                needed.append(source)
    excluded = [path for path in needed if excluded_from_build_context(path)]
    assert not excluded, f".dockerignore excludes files the image needs: {excluded}"


@pytest.mark.parametrize(
    "path", [".env", ".git/HEAD", ".venv/bin/python", "data/quire.db", "data/jwt_secret"]
)
def test_build_context_leaves_out_local_state_and_secrets(path: str) -> None:
    assert excluded_from_build_context(path)
