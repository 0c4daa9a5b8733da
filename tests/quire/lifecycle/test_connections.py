"""A tenant's connections: settings stored sealed per tenant and provider, opened only for the
connectors, described to the API without a value, audited by field name (never a value), and
re-sealed under a new key by a rotation. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import threading

import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy import func, select, update
from standardwebhooks import Webhook

from quire.audit.models import AuditEntry
from quire.db import Database
from quire.errors import Forbidden, Invalid, NotFound
from quire.lifecycle import connections
from quire.lifecycle.models import Connection
from quire.lifecycle.secrets import Keyring, UnreadableSecret
from quire.tenancy import ALL_TENANTS
from tests.quire.lifecycle.test_secrets import KEYRING, NEW, ROTATED
from tests.support.world import World, build_world, unique_slug

SCIM = {"base_url": "https://idp.example/scim/v2", "token": "tok-very-secret-123"}


@pytest.fixture
def acme(database: Database) -> World:
    return build_world(database, unique_slug("acme"), specialists=0)


@pytest.fixture
def globex(database: Database) -> World:
    return build_world(database, unique_slug("globex"), specialists=0)


def put(database: Database, world: World, provider: str, settings, keyring: Keyring = KEYRING):
    with database.session(world.tenant_id, write=True) as session:
        connections.put_connection(session, world.admin.actor, keyring, provider, settings)


def get(database: Database, world: World, provider: str, keyring: Keyring = KEYRING):
    with database.session(world.tenant_id) as session:
        return connections.get_connection(session, keyring, provider)


def audited(database: Database, world: World) -> list[AuditEntry]:
    with database.session(world.tenant_id) as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.object_type == "connection")
                .order_by(AuditEntry.id)
            )
        )


def test_settings_put_are_read_back_opened_for_the_connectors(database, acme):
    put(database, acme, "identity", SCIM)
    assert get(database, acme, "identity") == SCIM
    assert get(database, acme, "email") is None


def test_the_stored_row_holds_only_ciphertext(database, acme):
    put(database, acme, "identity", SCIM)
    with database.session(acme.tenant_id) as session:
        row = session.scalar(select(Connection))
        assert row.key_id == "k1"
        assert b"tok-very-secret" not in row.sealed
        assert b"idp.example" not in row.sealed


def test_describing_connections_shows_which_are_configured_and_never_a_value(database, acme):
    put(database, acme, "identity", SCIM)
    put(database, acme, "chat", {"webhook_url": "https://chat.example/hooks/T0/B0/xyzzy"})
    with database.session(acme.tenant_id) as session:
        described = connections.describe_connections(session)
    shown = json.dumps([view.model_dump(mode="json") for view in described])
    assert [view.provider for view in described] == ["chat", "identity"]
    assert all(view.configured and view.key_id == "k1" for view in described)
    assert described[0].updated_by == acme.admin.id
    assert "tok-very-secret" not in shown
    assert "xyzzy" not in shown
    assert "idp.example" not in shown


def test_a_connector_model_is_stored_with_its_secret_fields_revealed(database, acme):
    class ScimSettings(BaseModel):
        base_url: str
        token: SecretStr

    put(database, acme, "identity", ScimSettings(base_url=SCIM["base_url"], token=SCIM["token"]))
    assert get(database, acme, "identity") == SCIM  # not "**********"


def test_the_audit_log_names_the_fields_that_changed_never_their_values(database, acme):
    put(database, acme, "identity", SCIM)
    put(database, acme, "identity", {**SCIM, "token": "tok-rotated-456", "timeout": 5})
    created, updated = audited(database, acme)
    assert (created.action, created.object_id) == ("connection.created", "identity")
    assert created.after == {"fields": ["base_url", "token"], "changed": ["base_url", "token"],
                             "key_id": "k1"}  # fmt: skip
    assert updated.action == "connection.updated"
    assert updated.before == {"fields": ["base_url", "token"], "key_id": "k1"}
    assert updated.after["changed"] == ["timeout", "token"]
    assert updated.actor_id == acme.admin.id
    logged = json.dumps([created.before, created.after, updated.before, updated.after])
    for value in ("tok-very-secret", "tok-rotated", "idp.example"):
        assert value not in logged


def test_deleting_a_connection_removes_it_and_is_audited(database, acme):
    put(database, acme, "identity", SCIM)
    with database.session(acme.tenant_id, write=True) as session:
        connections.delete_connection(session, acme.admin.actor, "identity")
    assert get(database, acme, "identity") is None
    assert audited(database, acme)[-1].action == "connection.deleted"
    with (
        pytest.raises(NotFound, match="no connection is configured"),
        database.session(acme.tenant_id, write=True) as session,
    ):
        connections.delete_connection(session, acme.admin.actor, "identity")


def test_only_admins_change_connections(database, acme):
    with (
        pytest.raises(Forbidden),
        database.session(acme.tenant_id, write=True) as session,
    ):
        connections.put_connection(session, acme.manager.actor, KEYRING, "identity", SCIM)
    assert get(database, acme, "identity") is None


def test_another_tenant_neither_sees_nor_opens_a_tenants_connection(database, acme, globex):
    put(database, acme, "identity", SCIM)
    assert get(database, globex, "identity") is None
    with database.session(globex.tenant_id) as session:
        assert connections.describe_connections(session) == []
    # A row copied into another tenant does not open there: its ciphertext names its tenant.
    with database.session(None, write=True) as session:
        row = session.scalar(select(Connection).execution_options(**ALL_TENANTS))
        session.add(
            Connection(
                tenant_id=globex.tenant_id, provider="identity", sealed=row.sealed, key_id="k1"
            )
        )
    with pytest.raises(UnreadableSecret):
        get(database, globex, "identity")


@pytest.mark.parametrize(
    ("provider", "settings", "problem"),
    [
        ("Identity", SCIM, "provider: 1-32 lowercase"),
        ("x" * 33, SCIM, "provider: 1-32 lowercase"),
        ("identity", ["not", "an", "object"], "must be a JSON object"),
        ("identity", {"token": "a\x00b"}, "NUL"),
        ("identity", {"\x00": "a"}, "NUL"),
        ("identity", {"n" * 65: 1}, "field names are 1-64"),
        ("identity", {"ratio": float("nan")}, "finite"),
        ("identity", {"when": object()}, "JSON values only"),
        ("identity", {"blob": "x" * 17_000}, "at most 16 KiB"),
        ("hr_webhook", {"secret": "not-whsec"}, "hr_webhook settings"),
        ("hr_webhook", {"secret": "whsec_" + base64.b64encode(b"short").decode()}, "hr_webhook"),
        ("hr_webhook", {"secret": "whsec_!!!!"}, "hr_webhook settings"),
        ("hr_webhook", {"secret": "whsec_" + "A" * 40, "extra": 1}, "hr_webhook settings"),
    ],
)
def test_unusable_settings_are_refused_and_nothing_is_stored(
    database, acme, provider, settings, problem
):
    with (
        pytest.raises(Invalid, match=problem),
        database.session(acme.tenant_id, write=True) as session,
    ):
        connections.put_connection(session, acme.admin.actor, KEYRING, provider, settings)
    with database.session(acme.tenant_id) as session:
        assert connections.describe_connections(session) == []


def test_a_new_webhook_secret_is_standard_webhooks_format_returned_once_and_stored(database, acme):
    with database.session(acme.tenant_id, write=True) as session:
        secret = connections.new_webhook_secret(session, acme.admin.actor, KEYRING)
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    Webhook(secret)  # the library reads it
    with database.session(acme.tenant_id) as session:
        assert connections.webhook_secret(session, KEYRING) == secret
        assert [v.provider for v in connections.describe_connections(session)] == ["hr_webhook"]
    [entry] = audited(database, acme)
    assert entry.after["fields"] == ["secret"]
    assert secret.removeprefix("whsec_") not in json.dumps(entry.after)


def test_a_second_webhook_secret_replaces_the_first(database, acme):
    with database.session(acme.tenant_id, write=True) as session:
        first = connections.new_webhook_secret(session, acme.admin.actor, KEYRING)
    with database.session(acme.tenant_id, write=True) as session:
        second = connections.new_webhook_secret(session, acme.admin.actor, KEYRING)
    assert first != second
    with database.session(acme.tenant_id) as session:
        assert connections.webhook_secret(session, KEYRING) == second
    assert audited(database, acme)[-1].after["changed"] == ["secret"]


def test_rotation_reseals_every_tenants_rows_with_the_new_key_in_batches(database, acme, globex):
    put(database, acme, "identity", SCIM)
    put(database, acme, "chat", {"webhook_url": "https://chat.example/hook"})
    put(database, globex, "identity", {**SCIM, "token": "globex-token"})
    # Before the rotation, the new keyring still opens what the old key sealed.
    assert get(database, acme, "identity", ROTATED) == SCIM

    assert connections.rotate(database, ROTATED, batch_size=2) == 3

    with database.session(None) as session:
        keys = session.scalars(select(Connection.key_id).execution_options(**ALL_TENANTS)).all()
    assert keys == ["k2", "k2", "k2"]
    only_new = Keyring.parse(NEW)  # the old key can now be dropped
    assert get(database, acme, "identity", only_new) == SCIM
    assert get(database, globex, "identity", only_new) == {**SCIM, "token": "globex-token"}
    resealed = [e for e in audited(database, globex) if e.action == "connection.resealed"]
    assert [(e.object_id, e.before, e.after) for e in resealed] == [
        ("identity", {"key_id": "k1"}, {"key_id": "k2"})
    ]
    assert resealed[0].actor_id is None  # Quire itself
    assert connections.rotate(database, ROTATED) == 0  # nothing left to do


def test_rotation_in_a_tenants_session_reseals_that_tenants_rows_only(database, acme, globex):
    put(database, acme, "identity", SCIM)
    put(database, globex, "identity", SCIM)
    with database.session(acme.tenant_id, write=True) as session:
        assert connections.rotate(session, ROTATED) == 1
    with database.session(globex.tenant_id) as session:
        assert session.scalar(select(Connection.key_id)) == "k1"


def test_a_row_whose_key_left_the_keyring_stops_the_rotation_naming_the_key(database, acme):
    put(database, acme, "identity", SCIM)
    with pytest.raises(UnreadableSecret, match="'k1', which is not in the keyring"):
        connections.rotate(database, Keyring.parse(f"{NEW},{NEW.replace('k2', 'k3')}"))


def test_new_settings_repair_a_connection_whose_key_left_the_keyring(database, acme):
    put(database, acme, "identity", SCIM)
    with database.session(acme.tenant_id, write=True) as session:
        session.execute(update(Connection).values(key_id="k0"))
    put(database, acme, "identity", SCIM)
    assert get(database, acme, "identity") == SCIM
    assert audited(database, acme)[-1].before == {
        "fields": None,
        "key_id": "k0",
        "unreadable": True,
    }


@pytest.mark.postgres
def test_two_first_puts_of_one_provider_at_once_end_as_one_row(pg_url):
    """The loser's INSERT waits on the unique index, fails in its savepoint, and replaces the
    winner's settings instead: both PUTs succeed, one row remains."""
    database = Database(pg_url)
    try:
        acme = build_world(database, unique_slug("racing"), specialists=0)
        start = threading.Barrier(2)
        failures: list[BaseException] = []

        def first_put(token: str) -> None:
            try:
                with database.session(acme.tenant_id, write=True) as session:
                    session.scalar(select(func.count()).select_from(Connection))
                    start.wait(10)
                    connections.put_connection(
                        session, acme.admin.actor, KEYRING, "identity", {**SCIM, "token": token}
                    )
            except BaseException as exc:  # reported below, in the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=first_put, args=(t,)) for t in ("one", "two")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert failures == []
        with database.session(acme.tenant_id) as session:
            assert session.scalar(select(func.count()).select_from(Connection)) == 1
        assert get(database, acme, "identity")["token"] in ("one", "two")
        actions = sorted(entry.action for entry in audited(database, acme))
        assert actions == ["connection.created", "connection.updated"]
    finally:
        database.dispose()
