"""Events in: HR's Standard Webhooks deliveries, verified against the tenant's own secret
within the time window, stored once per webhook id with their outbox event, quarantined with a
readable reason when signed but unusable, and refused (401, nothing stored anywhere) otherwise;
admins' events share the payload and the storage. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import typing
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text
from standardwebhooks import Webhook

from quire.audit.models import AuditEntry
from quire.db import Database
from quire.errors import Forbidden, Invalid, Unauthenticated
from quire.events.models import Event
from quire.lifecycle import connections, webhooks
from quire.lifecycle.models import (
    EVENT_TYPES,
    EventStatus,
    LifecycleEvent,
    LifecycleRun,
    QuarantinedDelivery,
)
from quire.lifecycle.webhooks import LifecycleEventIn, Receipt, ReceiptStatus
from quire.tenancy import ALL_TENANTS
from tests.quire.lifecycle.test_secrets import KEYRING
from tests.support.world import World, build_world, unique_slug

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@dataclass
class Hr:
    """A tenant whose HR system holds the tenant's webhook signing secret."""

    world: World
    secret: str


def hr_tenant(database: Database, stem: str) -> Hr:
    world = build_world(database, unique_slug(stem), specialists=0)
    with database.session(world.tenant_id, write=True) as session:
        secret = connections.new_webhook_secret(session, world.admin.actor, KEYRING)
    return Hr(world, secret)


@pytest.fixture
def acme(database: Database) -> Hr:
    return hr_tenant(database, "acme")


# For what is decided before any row is read or written (the headers, the window, the
# signature's arithmetic), one backend is enough: these tests take SQLite's only.
ONE_BACKEND = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def payload(event_type: str = "person.onboard", **person: object) -> dict:
    return {
        "type": event_type,
        "timestamp": "2026-03-02T09:58:00+01:00",
        "data": {
            "person": {
                "id": "hr-1001",
                "email": "Ana.Lima@Acme.Example",
                "given_name": " Ana ",
                "family_name": "Lima",
                "groups": ["writers", "staff", "writers"],
                **person,
            }
        },
    }


def encoded(value: dict) -> bytes:
    return json.dumps(value).encode()


def signed(
    secret: str, body: bytes, *, webhook_id: str | None = None, at: dt.datetime = NOW
) -> dict[str, str]:
    """The headers HR sends: signed by standardwebhooks itself (its `sign`) when the body is
    text; over the raw bytes, as the spec defines it, when it is not."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    try:
        signature = Webhook(secret).sign(webhook_id, at, body.decode("utf-8"))
    except UnicodeDecodeError:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        content = f"{webhook_id}.{int(at.timestamp())}.".encode() + body
        digest = hmac.new(key, content, hashlib.sha256).digest()
        signature = "v1," + base64.b64encode(digest).decode()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def deliver(
    database: Database, hr: Hr, body: bytes, headers: dict[str, str] | None = None, **kw
) -> Receipt:
    return webhooks.receive(
        database,
        hr.world.slug,
        signed(hr.secret, body) if headers is None else headers,
        body,
        keyring=KEYRING,
        now=kw.pop("now", NOW),
        **kw,
    )


def stored(database: Database) -> dict[str, int]:
    """Rows in every table a delivery could write, across tenants."""
    with database.session(None) as session:
        return {
            model.__tablename__: session.scalar(
                select(func.count()).select_from(model).execution_options(**ALL_TENANTS)
            )
            for model in (LifecycleEvent, QuarantinedDelivery, LifecycleRun, Event)
        }


NOTHING = {"lifecycle_events": 0, "lifecycle_quarantine": 0, "lifecycle_runs": 0, "events": 0}


# --- accepted, duplicate -------------------------------------------------------------------------


def test_a_signed_delivery_is_accepted_and_stored_with_its_outbox_event(database, acme):
    body = encoded(payload())
    headers = signed(acme.secret, body, webhook_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    receipt = deliver(database, acme, body, headers)
    assert receipt.status is ReceiptStatus.ACCEPTED
    assert receipt.webhook_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert receipt.event_status is EventStatus.RECEIVED
    with database.session(acme.world.tenant_id) as session:
        event = session.get(LifecycleEvent, receipt.event_id)
        assert (event.source, event.event_type, event.person_key) == (
            "webhook",
            "person.onboard",
            "hr-1001",
        )
        assert event.webhook_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
        assert event.occurred_at == dt.datetime(2026, 3, 2, 8, 58, tzinfo=dt.UTC)
        assert event.received_by is None
        person = event.payload["data"]["person"]
        assert person["email"] == "ana.lima@acme.example"  # normalised as validated
        assert person["given_name"] == "Ana"
        assert person["groups"] == ["writers", "staff"]
        [outbox] = session.scalars(select(Event)).all()
        assert outbox.type == "lifecycle.event_received"
        assert outbox.aggregate_id == event.id
        assert outbox.payload["lifecycle_event"]["id"] == str(event.id)
    assert stored(database) == {**NOTHING, "lifecycle_events": 1, "events": 1}


def test_the_same_webhook_id_again_is_a_duplicate_and_stores_nothing_more(database, acme):
    body = encoded(payload())
    headers = signed(acme.secret, body)
    first = deliver(database, acme, body, headers)
    again = deliver(database, acme, body, headers)
    assert again.status is ReceiptStatus.DUPLICATE
    assert again.event_id == first.event_id
    assert stored(database) == {**NOTHING, "lifecycle_events": 1, "events": 1}


def test_header_names_are_read_in_any_case_and_the_tenant_by_id_too(database, acme):
    body = encoded(payload())
    headers = {name.title(): value for name, value in signed(acme.secret, body).items()}
    receipt = webhooks.receive(
        database, str(acme.world.tenant_id), headers, body, keyring=KEYRING, now=NOW
    )
    assert receipt.status is ReceiptStatus.ACCEPTED


@ONE_BACKEND
def test_one_of_several_offered_signatures_matching_is_enough(database, acme):
    body = encoded(payload())
    headers = signed(acme.secret, body)
    other = signed(f"whsec_{base64.b64encode(b'o' * 32).decode()}", body)["webhook-signature"]
    headers["webhook-signature"] = f"v1a,ignored {other} {headers['webhook-signature']}"
    assert deliver(database, acme, body, headers).status is ReceiptStatus.ACCEPTED


def test_two_deliveries_of_one_webhook_id_racing_store_exactly_one(database, acme):
    body = encoded(payload())
    headers = signed(acme.secret, body)
    racers = 6
    start = threading.Barrier(racers)
    receipts: list[Receipt] = []

    def race() -> None:
        start.wait()
        receipts.append(deliver(database, acme, body, headers))

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(receipt.status for receipt in receipts)
    assert statuses == [ReceiptStatus.ACCEPTED] + [ReceiptStatus.DUPLICATE] * (racers - 1)
    assert len({receipt.event_id for receipt in receipts}) == 1
    assert stored(database) == {**NOTHING, "lifecycle_events": 1, "events": 1}


@pytest.mark.postgres
def test_a_delivery_that_loses_the_insert_race_answers_duplicate(pg_url):
    """The other delivery's insert is held open: this one passes the look-up, waits on the
    unique index, and gets the IntegrityError once the other commits."""
    database = Database(pg_url)
    try:
        acme = hr_tenant(database, "racing")
        body = encoded(payload())
        headers = signed(acme.secret, body)
        inserted, release = threading.Event(), threading.Event()
        other_id = uuid.uuid4()

        def other_delivery() -> None:
            with database.session(acme.world.tenant_id, write=True) as session:
                session.add(
                    LifecycleEvent(
                        id=other_id,
                        tenant_id=acme.world.tenant_id,
                        webhook_id=headers["webhook-id"],
                        event_type="person.onboard",
                        person_key="hr-1001",
                        occurred_at=NOW,
                        payload={},
                        source="webhook",
                    )
                )
                session.flush()
                inserted.set()
                release.wait(30)

        receipts: list[Receipt] = []
        other = threading.Thread(target=other_delivery)
        other.start()
        assert inserted.wait(30)
        this = threading.Thread(
            target=lambda: receipts.append(deliver(database, acme, body, headers))
        )
        this.start()
        wait_for_a_lock_wait(database)
        release.set()
        other.join(30)
        this.join(30)
        [receipt] = receipts
        assert receipt.status is ReceiptStatus.DUPLICATE
        assert receipt.event_id == other_id
        assert stored(database)["lifecycle_events"] == 1
        assert stored(database)["events"] == 0  # the loser's outbox event rolled back with it
    finally:
        database.dispose()


def wait_for_a_lock_wait(database: Database, timeout: float = 20) -> None:
    """Until some session of this database waits on a lock (the losing insert)."""
    deadline = time.monotonic() + timeout
    with database.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar()
            conn.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the second insert never waited on the first")


# --- refused: nothing stored ---------------------------------------------------------------------


def refused(database: Database, hr: Hr, body: bytes, headers: dict[str, str], **kw) -> str:
    with pytest.raises(Unauthenticated) as caught:
        deliver(database, hr, body, headers, **kw)
    assert caught.value.code == "webhook_unverified"
    assert stored(database) == NOTHING
    return caught.value.message


def test_a_delivery_signed_with_another_secret_is_refused(database, acme):
    body = encoded(payload())
    impostor = f"whsec_{base64.b64encode(b'x' * 32).decode()}"
    assert "no webhook-signature matches" in refused(database, acme, body, signed(impostor, body))


def test_a_body_altered_after_signing_is_refused(database, acme):
    headers = signed(acme.secret, encoded(payload()))
    altered = encoded(payload(email="mallory@evil.example"))
    assert "no webhook-signature matches" in refused(database, acme, altered, headers)


@ONE_BACKEND
@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_delivery_missing_a_header_is_refused(database, acme, missing):
    body = encoded(payload())
    headers = signed(acme.secret, body)
    del headers[missing]
    assert "needs the webhook-id" in refused(database, acme, body, headers)


@ONE_BACKEND
@pytest.mark.parametrize(
    ("header", "value", "problem"),
    [
        ("webhook-signature", "v1", "no v1 signature"),
        ("webhook-signature", "v1,!!not-base64!!", "no v1 signature"),
        ("webhook-signature", "v2,abcd", "no v1 signature"),
        ("webhook-signature", "v1," + "A" * 9000, "too long"),
        ("webhook-timestamp", "1772442000.5", "whole seconds"),
        ("webhook-timestamp", "-1", "whole seconds"),
        ("webhook-id", "has space", "visible ASCII"),
        ("webhook-id", "m" * 129, "visible ASCII"),
        ("webhook-id", "nul\x00", "visible ASCII"),
    ],
)
def test_malformed_headers_are_refused_not_crashed_on(database, acme, header, value, problem):
    body = encoded(payload())
    headers = {**signed(acme.secret, body), header: value}
    assert problem in refused(database, acme, body, headers)


@ONE_BACKEND
@pytest.mark.parametrize(("offset", "when"), [(-360, "in the past"), (360, "in the future")])
def test_a_timestamp_six_minutes_off_is_refused(database, acme, offset, when):
    body = encoded(payload())
    headers = signed(acme.secret, body, at=NOW + dt.timedelta(seconds=offset))
    message = refused(database, acme, body, headers)
    assert f"360 s {when}" in message
    assert "within 300 s" in message


@ONE_BACKEND
def test_the_window_is_the_configured_tolerance(database, acme):
    body = encoded(payload())
    headers = signed(acme.secret, body, at=NOW - dt.timedelta(minutes=6))
    receipt = deliver(database, acme, body, headers, tolerance_seconds=600)
    assert receipt.status is ReceiptStatus.ACCEPTED


@ONE_BACKEND
def test_the_edge_of_the_window_is_inside_it(database, acme):
    body = encoded(payload())
    headers = signed(acme.secret, body, at=NOW - dt.timedelta(seconds=300))
    assert deliver(database, acme, body, headers).status is ReceiptStatus.ACCEPTED


def test_an_unknown_tenant_and_one_without_a_secret_get_the_same_refusal(database, acme):
    body = encoded(payload())
    headers = signed(acme.secret, body)
    bare = build_world(database, unique_slug("bare"), specialists=0)
    answers = set()
    for tenant in ("no-such-tenant", bare.slug, str(uuid.uuid4()), "Not A Slug\x00"):
        with pytest.raises(Unauthenticated) as caught:
            webhooks.receive(database, tenant, headers, body, keyring=KEYRING, now=NOW)
        answers.add(caught.value.message)
    assert len(answers) == 1
    assert stored(database) == NOTHING


def test_one_tenants_secret_does_not_verify_another_tenants_delivery(database, acme):
    globex = hr_tenant(database, "globex")
    body = encoded(payload())
    signed_by_acme = signed(acme.secret, body)
    assert "no webhook-signature matches" in refused(database, globex, body, signed_by_acme)
    assert deliver(database, globex, body).status is ReceiptStatus.ACCEPTED


def test_the_same_webhook_id_in_two_tenants_is_two_events(database, acme):
    globex = hr_tenant(database, "globex")
    body = encoded(payload())
    for hr in (acme, globex):
        receipt = deliver(database, hr, body, signed(hr.secret, body, webhook_id="msg_1"))
        assert receipt.status is ReceiptStatus.ACCEPTED
    assert stored(database)["lifecycle_events"] == 2


# --- quarantined ---------------------------------------------------------------------------------

TOO_LONG_ID = "x" * 129


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"this is not JSON {", "body: Invalid JSON"),
        (b"[1, 2]", "body: Input should be an object"),
        (encoded(payload("person.promote")), "type: Input should be 'person.onboard'"),
        (
            encoded({**payload(), "data": {"person": {"email": "a@b.example"}}}),
            "data.person.id: Field required",
        ),
        (encoded(payload(given_name="An\x00a")), "given_name: must not contain control"),
        (encoded(payload(family_name="Li\nma")), "control characters (U+000A found)"),
        (encoded(payload(id=TOO_LONG_ID)), "data.person.id: String should have at most 128"),
        (encoded(payload(email="not-an-address")), "data.person.email: is not an email address"),
        (encoded(payload(nickname="Ana")), "data.person.nickname: Extra inputs are not"),
        (encoded({**payload(), "timestamp": "2026-03-02T09:00:00"}), "timestamp: Input should"),
        (
            encoded(payload(start_date="2026-03-09", exit_date="2026-03-01")),
            "exit_date is before start_date",
        ),
        (b'{"type": "person.onboard", "name": "\xff\xfe"}', "not UTF-8 text: byte 36 (0xff)"),
        (b'{"type": "person\x00onboard"}', "Invalid JSON"),
        (b"[" * 70_000, "at most 65536"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "unknown-type",
        "no-person-id",
        "nul",
        "newline-in-a-name",
        "over-long-id",
        "bad-email",
        "unknown-field",
        "naive-timestamp",
        "exit-before-start",
        "not-utf8",
        "raw-nul-byte",
        "too-large",
    ],
)
def test_a_malformed_payload_is_refused_with_a_readable_reason(body, reason):
    found = webhooks.parse_payload(body)
    assert isinstance(found, str)
    assert reason in found


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"this is not JSON {", "body: Invalid JSON"),
        (encoded(payload(id=TOO_LONG_ID)), "data.person.id: String should have at most 128"),
        (encoded(payload(given_name="An\x00a")), "given_name: must not contain control"),
        (b'{"type": "person.onboard", "name": "\xff\xfe"}', "not UTF-8 text: byte 36 (0xff)"),
        (b"[" * 70_000, "at most 65536"),
    ],
    ids=["not-json", "over-long-id", "nul", "not-utf8", "too-large"],
)
def test_a_signed_but_malformed_delivery_is_quarantined_with_a_readable_reason(
    database, acme, body, reason
):
    receipt = deliver(database, acme, body)
    assert receipt.status is ReceiptStatus.QUARANTINED
    assert reason in receipt.reason
    assert "\x00" not in receipt.reason
    with database.session(acme.world.tenant_id) as session:
        [kept] = session.scalars(select(QuarantinedDelivery)).all()
        assert kept.id == receipt.quarantine_id
        assert kept.webhook_id == receipt.webhook_id
        assert kept.reason == receipt.reason
        assert "\x00" not in kept.body
        assert len(kept.body.encode()) <= webhooks.BODY_MAX_BYTES
    assert stored(database) == {**NOTHING, "lifecycle_quarantine": 1}


def test_a_quarantined_body_is_kept_as_received_where_it_can_be(database, acme):
    body = b'{"type": "person.onboard", "name": "Jos\xc3\xa9 \xff", "nul": "a\x00b"}'
    deliver(database, acme, body)
    with database.session(acme.world.tenant_id) as session:
        kept = session.scalar(select(QuarantinedDelivery))
    assert kept.body == '{"type": "person.onboard", "name": "José \\xff", "nul": "a\\x00b"}'


def test_a_quarantined_delivery_sent_again_is_a_duplicate(database, acme):
    body = b"not json"
    headers = signed(acme.secret, body)
    first = deliver(database, acme, body, headers)
    again = deliver(database, acme, body, headers)
    assert again.status is ReceiptStatus.DUPLICATE
    assert again.quarantine_id == first.quarantine_id
    assert stored(database) == {**NOTHING, "lifecycle_quarantine": 1}


def test_the_quarantine_is_listed_newest_first_in_pages_per_tenant(database, acme):
    globex = hr_tenant(database, "globex")
    ids = [deliver(database, acme, f"junk {i}".encode()).quarantine_id for i in range(3)]
    deliver(database, globex, b"globex junk")
    with database.session(acme.world.tenant_id) as session:
        page, cursor = webhooks.list_quarantine(session, limit=2)
        assert [row.id for row in page] == ids[::-1][:2]
        rest, last = webhooks.list_quarantine(session, cursor, limit=2)
        assert [row.id for row in rest] == ids[:1]
        assert last is None
        shown = webhooks.QuarantinedOut.model_validate(page[0])
        assert shown.body == "junk 2"
        assert "Invalid JSON" in shown.reason
        with pytest.raises(Invalid):
            webhooks.list_quarantine(session, "not-a-cursor")
        with pytest.raises(Invalid):
            webhooks.list_quarantine(session, limit=0)


# --- dated events --------------------------------------------------------------------------------


def test_an_exit_dated_in_the_future_is_scheduled_for_its_day_and_starts_nothing_yet(
    database, acme
):
    body = encoded(payload("person.exit", exit_date="2026-03-20"))
    receipt = deliver(database, acme, body)
    assert receipt.status is ReceiptStatus.ACCEPTED
    assert receipt.event_status is EventStatus.SCHEDULED
    assert receipt.effective_on == dt.date(2026, 3, 20)
    with database.session(acme.world.tenant_id) as session:
        event = session.get(LifecycleEvent, receipt.event_id)
        assert (event.status, event.effective_on) == (EventStatus.SCHEDULED, dt.date(2026, 3, 20))
    assert stored(database) == {**NOTHING, "lifecycle_events": 1}  # the sweep releases it


def test_an_exit_dated_today_runs_now(database, acme):
    receipt = deliver(database, acme, encoded(payload("person.exit", exit_date="2026-03-02")))
    assert receipt.event_status is EventStatus.RECEIVED
    assert receipt.effective_on is None
    assert stored(database) == {**NOTHING, "lifecycle_events": 1, "events": 1}


# --- admins' events ------------------------------------------------------------------------------


def test_an_admins_event_is_stored_started_and_audited_like_a_webhooks(database, acme):
    world = acme.world
    entered = LifecycleEventIn.model_validate(payload("person.transfer", old_groups=["staff"]))
    with database.session(world.tenant_id, write=True) as session:
        event = webhooks.record_admin_event(session, world.admin.actor, entered, now=NOW)
        event_id = event.id
    with database.session(world.tenant_id) as session:
        event = session.get(LifecycleEvent, event_id)
        assert (event.source, event.webhook_id, event.received_by) == (
            "admin",
            None,
            world.admin.id,
        )
        assert event.payload["data"]["person"]["old_groups"] == ["staff"]
        assert session.scalar(select(Event.aggregate_id)) == event_id
        entry = session.scalar(
            select(AuditEntry).where(AuditEntry.action == "lifecycle.event_recorded")
        )
        assert entry.object_id == str(event_id)
        assert entry.after["person_key"] == "hr-1001"
        assert "ana.lima@acme.example" not in json.dumps(entry.after)


def test_only_admins_enter_events(database, acme):
    entered = LifecycleEventIn.model_validate(payload())
    with (
        pytest.raises(Forbidden),
        database.session(acme.world.tenant_id, write=True) as session,
    ):
        webhooks.record_admin_event(session, acme.world.manager.actor, entered)
    assert stored(database) == NOTHING


def test_the_payloads_event_types_are_the_tables():
    assert typing.get_args(webhooks.EventType) == EVENT_TYPES
