"""`quire dead-letters list|replay` and `quire lifecycle rotate-secrets` against a SQLite
database: the open dead letters as a table across tenants, a replay refused (and nothing
changed) when the letter is unknown, closed or no Prefect server is named, and a rotation that
re-seals every connection under the new key and says how many.

(A replay that starts its flow run needs a Prefect API: the API's replay is the same code path,
and tests/flows run flows on a real one.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import select

from deployments.cli import main
from quire.db import Database
from quire.lifecycle import connections, dead_letters
from quire.lifecycle.models import Connection, DeadLetter, DeadLetterStatus
from quire.settings import get_settings
from quire.tenancy import ALL_TENANTS
from tests.api.test_lifecycle import park_a_run
from tests.quire.lifecycle.test_secrets import KEYRING, NEW, OLD
from tests.support.world import World, build_world, unique_slug


@pytest.fixture
def database(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    """The database `quire` is pointed at (through the environment, as an operator does)."""
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("QUIRE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QUIRE_SECRETS_KEYS", OLD)
    get_settings.cache_clear()
    found = Database(sqlite_url)
    yield found
    found.dispose()
    get_settings.cache_clear()


@pytest.fixture
def tenants(database: Database) -> tuple[World, World]:
    """Two tenants: listings span tenants, a replay stays inside its own."""
    acme = build_world(database, unique_slug("acme"), specialists=0)
    return acme, build_world(database, unique_slug("globex"), specialists=0)


def status_of(database: Database, world: World, letter_id: int) -> str:
    with database.session(world.tenant_id) as session:
        letter = session.get(DeadLetter, letter_id)
        assert letter is not None
        return str(letter.status)


def test_the_open_dead_letters_are_listed_as_a_table_across_tenants(database, tenants, capsys):
    acme, globex = tenants
    ours, theirs = park_a_run(database, acme), park_a_run(database, globex)
    assert main(["dead-letters", "list"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["id", "tenant", "run", "step", "kind", "attempts", "error"]
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows[str(ours.letter_id)][1:6] == [
        acme.slug,
        str(ours.run_id),
        "account",
        "identity.create_user",
        "6",
    ]
    assert rows[str(theirs.letter_id)][1] == globex.slug
    assert "the provider answered 503" in lines[0]

    assert main(["dead-letters", "list", "--tenant", acme.slug]) == 0
    assert globex.slug not in capsys.readouterr().out


def test_a_replayed_letter_is_no_longer_listed(database, tenants, capsys):
    acme, _ = tenants
    parked = park_a_run(database, acme)
    with database.session(acme.tenant_id, write=True) as session:
        dead_letters.replay(session, acme.admin.actor, parked.letter_id)
    assert main(["dead-letters", "list", "--tenant", acme.slug]) == 0
    assert capsys.readouterr().out.strip() == "no open dead letters"


def test_a_replay_without_a_prefect_server_changes_nothing(database, tenants, capsys):
    acme, _ = tenants
    parked = park_a_run(database, acme)
    with temporary_settings(updates={PREFECT_API_URL: ""}):
        code = main(["dead-letters", "replay", str(parked.letter_id), "--tenant", acme.slug])
    assert code == 2
    assert "PREFECT_API_URL" in capsys.readouterr().out
    assert status_of(database, acme, parked.letter_id) == DeadLetterStatus.OPEN


def test_replaying_an_unknown_or_closed_letter_or_tenant_is_refused(database, tenants, capsys):
    acme, globex = tenants
    parked = park_a_run(database, acme)
    theirs = park_a_run(database, globex)
    with temporary_settings(updates={PREFECT_API_URL: ""}):
        # Another tenant's letter is not found under this tenant.
        assert main(["dead-letters", "replay", str(theirs.letter_id), "--tenant", acme.slug]) == 2
        assert "no dead letter" in capsys.readouterr().out
        with database.session(acme.tenant_id, write=True) as session:
            dead_letters.replay(session, acme.admin.actor, parked.letter_id)
        assert main(["dead-letters", "replay", str(parked.letter_id), "--tenant", acme.slug]) == 2
        assert "replayed already" in capsys.readouterr().out
        with pytest.raises(SystemExit, match="no tenant"):
            main(["dead-letters", "replay", "1", "--tenant", "no-such-tenant"])
    assert status_of(database, globex, theirs.letter_id) == DeadLetterStatus.OPEN


def test_rotating_re_seals_every_tenants_connections_with_the_new_key(
    database, tenants, capsys, monkeypatch
):
    acme, globex = tenants
    for world in (acme, globex):
        with database.session(world.tenant_id, write=True) as session:
            connections.new_webhook_secret(session, world.admin.actor, KEYRING)
    monkeypatch.setenv("QUIRE_SECRETS_KEYS", f"{NEW},{OLD}")
    get_settings.cache_clear()

    assert main(["lifecycle", "rotate-secrets"]) == 0
    assert capsys.readouterr().out.strip() == "2 connection(s) re-sealed with key 'k2'"
    with database.session() as session:
        keys = session.scalars(select(Connection.key_id).execution_options(**ALL_TENANTS))
        assert set(keys) == {"k2"}
    assert main(["lifecycle", "rotate-secrets"]) == 0
    assert capsys.readouterr().out.startswith("0 connection(s)")


def test_rotating_without_the_key_a_row_was_sealed_with_stops_and_says_which(
    database, tenants, capsys, monkeypatch
):
    acme, _ = tenants
    with database.session(acme.tenant_id, write=True) as session:
        connections.new_webhook_secret(session, acme.admin.actor, KEYRING)
    monkeypatch.setenv("QUIRE_SECRETS_KEYS", NEW)  # the old key dropped too early
    get_settings.cache_clear()
    assert main(["lifecycle", "rotate-secrets"]) == 1
    assert "'k1'" in capsys.readouterr().out
