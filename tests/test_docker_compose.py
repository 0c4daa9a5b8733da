"""docker-compose.yml, Dockerfile and .dockerignore agree with the code.

No Docker engine runs where the tests run, so the container definitions are checked by
construction: every `quire` command they run exists, every environment name they set is a
`Settings` field, the ports line up, the database URL reaches the PostgreSQL service, and the
build context holds what the image installs.

Compose variables (`${NAME:-default}`) are resolved as `docker compose` would, with only
`OPERATOR_ENV` (what an operator puts in `.env`) in the environment.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator, Mapping
from fnmatch import fnmatchcase
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from pydantic import AliasChoices
from sqlalchemy.engine import make_url

from api.app import create_app
from quire import cli
from quire.db import normalize_url
from quire.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

API = "api"
POSTGRES = "postgres"
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


# --- What the commands run -----------------------------------------------------------------------

_SHELL_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}


def _words(command: str | list[str] | None) -> list[str]:
    """Shell words of a command, exec form or shell form (`sh -c "quire migrate && ..."`)."""
    if command is None:
        return []
    words: list[str] = []
    for part in [command] if isinstance(command, str) else command:
        lexer = shlex.shlex(str(part), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words.extend(lexer)
    return words


def quire_invocations(command: str | list[str] | None) -> list[list[str]]:
    """The arguments of each `quire ...` call in a command, in order."""
    calls: list[list[str]] = []
    current: list[str] | None = None
    for word in _words(command):
        if word == "quire" or word.endswith("/quire"):
            current = []
            calls.append(current)
        elif word in _SHELL_OPERATORS:
            current = None
        elif current is not None:
            current.append(word)
    return calls


def service_invocations(compose: dict[str, Any], name: str) -> list[list[str]]:
    service = services(compose)[name]
    command = service.get("command")
    argv = _words(service.get("entrypoint")) + _words(
        image_command() if command is None else command
    )
    return quire_invocations(argv)


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
    """The containers call `quire`: pyproject.toml installs it, pointing at quire.cli.main."""
    target = pyproject["project"]["scripts"]["quire"]
    module, _, attribute = target.partition(":")
    assert getattr(import_module(module), attribute) is cli.main


def test_every_quire_command_the_containers_run_exists(
    compose: dict[str, Any], cli_subcommands: dict[str, set[str]]
) -> None:
    """Each `quire <subcommand> --flags` in a service or the image's CMD parses in quire.cli."""
    calls = {f"image CMD: {image_command()}": quire_invocations(image_command())}
    for name in quire_services(compose):
        calls[f"service {name}"] = service_invocations(compose, name)
    assert all(calls.values()), f"a Quire container runs no quire command: {calls}"

    for where, invocations in calls.items():
        for subcommand, *arguments in invocations:
            assert subcommand in cli_subcommands, f"{where}: no `quire {subcommand}`"
            flags = {word.split("=", 1)[0] for word in arguments if word.startswith("--")}
            unknown = flags - cli_subcommands[subcommand]
            assert not unknown, f"{where}: `quire {subcommand}` has no option {sorted(unknown)}"


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
    """QUIRE_* and DATABASE_URL names in a Quire service or the image are Settings aliases."""
    known = setting_names()
    sources = {"Dockerfile ENV": image_environment()}
    sources.update({name: environment(services(compose)[name]) for name in quire_services(compose)})
    unknown = [
        f"{where}: {name}"
        for where, env in sources.items()
        for name in env
        if is_quire_setting_name(name) and name not in known
    ]
    assert not unknown, f"not a setting in quire/settings.py: {unknown}"


def test_quire_containers_get_valid_settings_on_postgresql(
    compose: dict[str, Any], settings_from: Callable[[Mapping[str, str]], Settings]
) -> None:
    """The values parse as Settings, with a database URL the data layer accepts (no SQLite)."""
    for name in quire_services(compose):
        settings = settings_from(container_environment(compose, name))
        url = normalize_url(settings.effective_database_url)
        assert url.get_backend_name() == "postgresql", name
        assert settings.jwt_secret is not None, f"{name}: would generate a per-container secret"


def test_jwt_secret_must_come_from_the_operator(raw_compose: dict[str, Any]) -> None:
    """The file ships no signing secret: compose stops with a message when it is not set."""
    for name in quire_services(raw_compose):
        secret = environment(services(raw_compose)[name]).get("QUIRE_JWT_SECRET", "")
        assert re.fullmatch(r"\$\{QUIRE_JWT_SECRET:\?[^}]+\}", secret), name
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
        environment(services(compose)[name])["DATABASE_URL"] for name in quire_services(compose)
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
    """pg_isready gates the dependants; the data directory survives `docker compose down`."""
    postgres = services(compose)[POSTGRES]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    named = {
        source
        for source, _, target in (str(volume).partition(":") for volume in postgres["volumes"])
        if target.split(":")[0] == "/var/lib/postgresql/data"
    }
    assert named, "the data directory is not on a volume"
    assert named <= set(compose.get("volumes") or {}), "not a named (top-level) volume"


def test_quire_services_wait_for_a_healthy_database(compose: dict[str, Any]) -> None:
    for name in quire_services(compose):
        assert depends_on(services(compose)[name]).get(POSTGRES) == "service_healthy", name


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


def test_image_holds_the_source_where_prefect_yaml_runs_deployments() -> None:
    """prefect.yaml's pull step changes into a directory the image copies the source tree to."""
    prefect_yaml = ROOT / "prefect.yaml"
    if not prefect_yaml.exists():
        pytest.skip("no prefect.yaml")
    directories = [
        spec["directory"]
        for step in yaml.safe_load(prefect_yaml.read_text()).get("pull") or []
        for name, spec in step.items()
        if name.endswith("set_working_directory")
    ]
    source_copies, workdir = set(), "/"
    for keyword, arguments in dockerfile_instructions():
        if keyword == "WORKDIR":
            workdir = str(Path(workdir, arguments))
        elif keyword == "COPY":
            *sources, destination = [w for w in shlex.split(arguments) if not w.startswith("--")]
            if "." in sources:
                source_copies.add(str(Path(workdir, destination)))
    assert set(directories) <= source_copies, f"the image has the source at {source_copies}"
    assert not excluded_from_build_context("prefect.yaml")
