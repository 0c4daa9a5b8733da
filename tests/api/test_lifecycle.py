"""Lifecycle over HTTP: HR's signed webhooks (accepted once, a repeat acknowledged, a bad
signature or a stale timestamp a 401 with nothing stored, a signed but unusable body
quarantined), admins' events, playbooks (shipped, versioned, refused with every problem's path,
drawn), connections that never show a secret, runs with their saga log and the dead-letter
queue with its replay. Admins only; another tenant's rows are 404s or invisible. On SQLite and
PostgreSQL (the folder's fixtures)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import func, select
from standardwebhooks import Webhook

from quire.db import Database
from quire.lifecycle import dead_letters, runs, webhooks
from quire.lifecycle.models import (
    DeadLetter,
    DeadLetterStatus,
    EventStatus,
    LifecycleEvent,
    QuarantinedDelivery,
    RunStatus,
    SagaStep,
    StepStatus,
)
from quire.lifecycle.webhooks import LifecycleEventIn
from tests.support.world import World

NON_ADMINS = ("manager", "reviewer", "finance", "specialist")
SECRETS = {
    "identity": ("bearer_token", "scim-token-do-not-show-7731"),
    "email": ("password", "smtp-password-do-not-show-4412"),
    "chat": ("webhook_url", "https://hooks.chat.example/T000/B000/chat-token-do-not-show-9"),
    "ai": ("api_key", "sk-ai-key-do-not-show-5530"),
}
CONNECTIONS: dict[str, dict[str, Any]] = {
    "identity": {"base_url": "https://idp.example/scim/v2"},
    "email": {"host": "smtp.example", "from_address": "people@acme.example", "user": "people"},
    "chat": {},
    "ai": {"base_url": "https://llm.example/v1", "model": "small"},
}


def connection(provider: str) -> dict[str, Any]:
    field, secret = SECRETS[provider]
    return {**CONNECTIONS[provider], field: secret}


def event(event_type: str = "person.onboard", **person: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "timestamp": "2026-03-02T09:58:00+01:00",
        "data": {
            "person": {
                "id": f"hr-{uuid.uuid4().hex[:8]}",
                "email": "ana.lima@acme.example",
                "given_name": "Ana",
                "family_name": "Lima",
                **person,
            }
        },
    }


def signed(
    secret: str, body: bytes, *, webhook_id: str | None = None, at: dt.datetime | None = None
) -> dict[str, str]:
    """The headers HR sends, signed by standardwebhooks itself."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or dt.datetime.now(dt.UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body.decode()),
        "content-type": "application/json",
    }


def raw_signed(secret: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks' signature over bytes that are not text (standardwebhooks' `sign`
    takes text only)."""
    webhook_id, at = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{at}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": at,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "content-type": "application/json",
    }


async def webhook_secret(client, world: World) -> str:
    made = await client.post("/lifecycle/connections/hr_webhook/secret", headers=world.admin.auth)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    return made.json()["secret"]


def stored(database: Database, world: World) -> tuple[int, int]:
    """(events, quarantined deliveries) the tenant holds."""
    with database.session(world.tenant_id) as session:
        return (
            session.scalar(select(func.count()).select_from(LifecycleEvent)) or 0,
            session.scalar(select(func.count()).select_from(QuarantinedDelivery)) or 0,
        )


# --- the webhook ---------------------------------------------------------------------------------


async def test_a_signed_delivery_is_accepted_once_and_its_repeat_acknowledged(
    client, database, world
):
    secret = await webhook_secret(client, world)
    body = json.dumps(event()).encode()
    headers = signed(secret, body)

    first = await client.post(f"/webhooks/hr/{world.slug}", content=body, headers=headers)
    assert first.status_code == 202, first.text
    receipt = first.json()
    assert (receipt["status"], receipt["event_status"]) == ("accepted", "received")
    assert receipt["effective_on"] is None
    again = await client.post(f"/webhooks/hr/{world.slug}", content=body, headers=headers)
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["event_id"]) == ("duplicate", receipt["event_id"])
    assert stored(database, world) == (1, 0)


async def test_an_exit_dated_later_is_accepted_for_its_day(client, world):
    secret = await webhook_secret(client, world)
    later = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=10)).isoformat()
    body = json.dumps(event("person.exit", exit_date=later)).encode()
    answer = await client.post(
        f"/webhooks/hr/{world.slug}", content=body, headers=signed(secret, body)
    )
    assert answer.status_code == 202, answer.text
    assert (answer.json()["event_status"], answer.json()["effective_on"]) == ("scheduled", later)


async def test_a_bad_signature_is_a_401_and_stores_nothing(client, database, world, rival):
    secret = await webhook_secret(client, world)
    theirs = await webhook_secret(client, rival)
    body = json.dumps(event()).encode()
    tampered = body.replace(b"Ana", b"Eve")
    attempts = [
        (body, signed(theirs, body)),  # another tenant's secret
        (tampered, signed(secret, body)),  # the body changed after signing
        (body, {**signed(secret, body), "webhook-id": "msg_other"}),  # another delivery's id
        (body, {"content-type": "application/json"}),  # not signed at all
        (body, {**signed(secret, body), "webhook-signature": "v1,bm90IGl0"}),
    ]
    for content, headers in attempts:
        refused = await client.post(f"/webhooks/hr/{world.slug}", content=content, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "webhook_unverified"
    assert stored(database, world) == (0, 0)


async def test_a_stale_or_future_timestamp_is_a_401_and_stores_nothing(
    client, database, world, settings
):
    secret = await webhook_secret(client, world)
    body = json.dumps(event()).encode()
    window = dt.timedelta(seconds=settings.webhook_tolerance_seconds + 60)
    for at in (dt.datetime.now(dt.UTC) - window, dt.datetime.now(dt.UTC) + window):
        refused = await client.post(
            f"/webhooks/hr/{world.slug}", content=body, headers=signed(secret, body, at=at)
        )
        assert refused.status_code == 401, refused.text
        assert "webhook-timestamp" in refused.json()["detail"]
    assert stored(database, world) == (0, 0)


async def test_a_tenant_without_a_secret_or_unknown_is_the_same_401(client, world):
    body = json.dumps(event()).encode()
    headers = signed("whsec_" + "A" * 44, body)
    unknown = await client.post("/webhooks/hr/no-such-tenant", content=body, headers=headers)
    unconfigured = await client.post(f"/webhooks/hr/{world.slug}", content=body, headers=headers)
    assert unknown.status_code == unconfigured.status_code == 401
    assert unknown.json()["detail"] == unconfigured.json()["detail"]


async def test_a_signed_but_malformed_delivery_is_quarantined_with_its_reason(
    client, database, world
):
    secret = await webhook_secret(client, world)
    body = json.dumps(event("person.promote")).encode()
    answer = await client.post(
        f"/webhooks/hr/{world.slug}", content=body, headers=signed(secret, body)
    )
    assert answer.status_code == 202, answer.text  # HR need not retry it
    assert answer.json()["status"] == "quarantined"
    assert answer.json()["reason"].startswith("type:")
    assert stored(database, world) == (0, 1)

    listed = await client.get("/lifecycle/quarantine", headers=world.admin.auth)
    assert listed.status_code == 200, listed.text
    [row] = listed.json()["items"]
    assert row["reason"] == answer.json()["reason"]
    assert json.loads(row["body"]) == json.loads(body)
    assert listed.json()["next_cursor"] is None


async def test_the_quarantine_is_paged_newest_first(client, world):
    secret = await webhook_secret(client, world)
    for n in range(3):
        body = json.dumps({"not": "an event", "n": n}).encode()
        await client.post(f"/webhooks/hr/{world.slug}", content=body, headers=signed(secret, body))
    page = (await client.get("/lifecycle/quarantine?limit=2", headers=world.admin.auth)).json()
    rest = await client.get(
        f"/lifecycle/quarantine?limit=2&cursor={page['next_cursor']}", headers=world.admin.auth
    )
    numbers = [json.loads(r["body"])["n"] for r in page["items"] + rest.json()["items"]]
    assert numbers == [2, 1, 0]
    assert rest.json()["next_cursor"] is None


async def test_a_signed_body_that_is_not_text_or_holds_a_nul_is_quarantined(
    client, database, world
):
    secret = await webhook_secret(client, world)
    not_text = b'{"type": "person.onboard\xff"}'
    with_nul = json.dumps(event(title="a\x00b")).encode()  # JSON's escape \u0000
    for body, headers in (
        (not_text, raw_signed(secret, not_text)),
        (with_nul, signed(secret, with_nul)),
    ):
        answer = await client.post(f"/webhooks/hr/{world.slug}", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "quarantined"
    assert stored(database, world) == (0, 2)


async def test_a_body_over_64_kib_is_a_413(client, world):
    secret = await webhook_secret(client, world)
    body = json.dumps(event(title="x" * webhooks.BODY_MAX_BYTES)).encode()
    refused = await client.post(
        f"/webhooks/hr/{world.slug}", content=body, headers=signed(secret, body)
    )
    assert refused.status_code == 413
    assert refused.json()["code"] == "body_too_large"


# --- admins' events ------------------------------------------------------------------------------


async def test_an_admin_enters_an_event_that_is_stored_as_a_webhooks_would_be(
    client, database, world
):
    entered = await client.post("/lifecycle/events", json=event(), headers=world.admin.auth)
    assert entered.status_code == 201, entered.text
    shown = entered.json()
    assert (shown["event_type"], shown["source"], shown["status"]) == (
        "person.onboard",
        "admin",
        "received",
    )
    assert shown["payload"]["data"]["person"]["email"] == "ana.lima@acme.example"
    assert stored(database, world) == (1, 0)


@pytest.mark.parametrize(
    "body",
    [
        event("person.promote"),
        event(email="not an address"),
        event(given_name="Ana\x00"),
        event(given_name="x" * 101),
        {**event(), "extra": 1},
        event(start_date=0),  # a date is a string, as the schema says: not seconds since 1970
    ],
    ids=["unknown-type", "bad-email", "nul", "too-long", "unknown-field", "number-for-a-date"],
)
async def test_a_bad_event_is_a_422_and_stores_nothing(client, database, world, body):
    refused = await client.post("/lifecycle/events", json=body, headers=world.admin.auth)
    assert refused.status_code == 422, refused.text
    assert stored(database, world) == (0, 0)


# --- playbooks -----------------------------------------------------------------------------------


async def test_the_shipped_playbook_is_version_0_and_each_put_the_next_version(client, world):
    path = "/lifecycle/playbooks/person.onboard"
    shipped = await client.get(path, headers=world.admin.auth)
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["version"], shipped.json()["source"]) == (0, "shipped")

    playbook = shipped.json()["playbook"]
    for version in (1, 2):
        playbook = {**playbook, "name": f"Our onboarding, v{version}"}
        put = await client.put(path, json=playbook, headers=world.admin.auth)
        assert put.status_code == 200, put.text
        assert (put.json()["version"], put.json()["source"]) == (version, "tenant")
    in_force = (await client.get(path, headers=world.admin.auth)).json()
    assert (in_force["version"], in_force["playbook"]["name"]) == (2, "Our onboarding, v2")


async def test_an_invalid_playbook_is_a_422_with_the_path_of_each_problem(client, world):
    path = "/lifecycle/playbooks/person.onboard"
    playbook = (await client.get(path, headers=world.admin.auth)).json()["playbook"]
    steps = [dict(step) for step in playbook["steps"]]
    steps[0]["needs"] = [steps[-1]["id"]]  # the last step needs the first: a cycle
    steps[1]["kind"] = "identity.create_usr"
    refused = await client.put(path, json={**playbook, "steps": steps}, headers=world.admin.auth)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "playbook_invalid"
    problems = {p["path"]: p["message"] for p in refused.json()["problems"]}
    assert "cycle" in problems["steps[0].needs[0]"]
    assert "did you mean identity.create_user" in problems["steps[1].kind"]
    shape = await client.put(path, json={"steps": "none"}, headers=world.admin.auth)
    assert {"name", "steps"} <= {p["path"] for p in shape.json()["problems"]}
    kept = (await client.get(path, headers=world.admin.auth)).json()
    assert kept["version"] == 0


async def test_the_playbook_is_drawn_as_svg_and_dot(client, world):
    svg = await client.get("/lifecycle/playbooks/person.exit/graph.svg", headers=world.admin.auth)
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in svg.text
    dot = await client.get(
        "/lifecycle/playbooks/person.transfer/graph.dot", headers=world.admin.auth
    )
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert dot.text.lstrip().startswith("digraph")


async def test_an_unknown_event_type_or_one_without_a_playbook_is_a_404(client, world):
    for path in (
        "/lifecycle/playbooks/person.promote",
        "/lifecycle/playbooks/person.promote/graph.svg",
        "/lifecycle/playbooks/person.update",
        "/lifecycle/playbooks/person.update/graph.dot",
    ):
        missing = await client.get(path, headers=world.admin.auth)
        assert missing.status_code == 404, (path, missing.text)
    assert (
        await client.put("/lifecycle/playbooks/person.promote", json={}, headers=world.admin.auth)
    ).status_code == 404


# --- connections ---------------------------------------------------------------------------------


async def test_connections_are_stored_and_described_without_ever_showing_a_secret(client, world):
    for provider in SECRETS:
        put = await client.put(
            f"/lifecycle/connections/{provider}",
            json=connection(provider),
            headers=world.admin.auth,
        )
        assert put.status_code == 200, put.text
        assert put.json()["provider"] == provider
        assert SECRETS[provider][1] not in put.text
    listed = await client.get("/lifecycle/connections", headers=world.admin.auth)
    assert listed.status_code == 200
    assert [c["provider"] for c in listed.json()] == sorted(SECRETS)
    for _, secret in SECRETS.values():
        assert secret not in listed.text


async def test_a_connection_is_deleted_once(client, world):
    path = "/lifecycle/connections/chat"
    await client.put(path, json=connection("chat"), headers=world.admin.auth)
    deleted = await client.delete(path, headers=world.admin.auth)
    assert deleted.status_code == 204
    assert (await client.get("/lifecycle/connections", headers=world.admin.auth)).json() == []
    again = await client.delete(path, headers=world.admin.auth)
    assert again.status_code == 404
    assert again.json()["code"] == "connection_not_found"


async def test_deleting_the_webhook_secret_stops_the_webhook(client, world):
    secret = await webhook_secret(client, world)
    deleted = await client.delete("/lifecycle/connections/hr_webhook", headers=world.admin.auth)
    assert deleted.status_code == 204
    body = json.dumps(event()).encode()
    refused = await client.post(
        f"/webhooks/hr/{world.slug}", content=body, headers=signed(secret, body)
    )
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("identity", {"base_url": "not a url", "bearer_token": SECRETS["identity"][1]}),
        ("identity", connection("email")),
        ("identity", {**connection("identity"), "verify_tls": "no"}),
        ("email", {**connection("email"), "port": 70000}),
        ("email", {**connection("email"), "password": None}),  # a user without a password
        ("chat", {"webhook_url": "ftp://chat-token-do-not-show-9"}),
        ("ai", {**connection("ai"), "base_url": "llm.example"}),
        ("ai", {**connection("ai"), "api_key": "sk-\x00"}),
        ("identity", [connection("identity")]),
    ],
)
async def test_settings_the_connector_would_not_take_are_a_422_that_shows_no_secret(
    client, world, provider, body
):
    refused = await client.put(
        f"/lifecycle/connections/{provider}", json=body, headers=world.admin.auth
    )
    assert refused.status_code == 422, refused.text
    for _, secret in SECRETS.values():
        assert secret not in refused.text
    assert "chat-token-do-not-show" not in refused.text
    assert (await client.get("/lifecycle/connections", headers=world.admin.auth)).json() == []


async def test_an_unknown_provider_is_not_there(client, world):
    """Each provider has its own path (its body documented as that provider's settings)."""
    for method in ("PUT", "DELETE"):
        answer = await client.request(
            method, "/lifecycle/connections/fax", json={}, headers=world.admin.auth
        )
        assert answer.status_code == 404, answer.text
    put = await client.put("/lifecycle/connections/hr_webhook", json={}, headers=world.admin.auth)
    assert put.status_code == 405  # its secret is generated: POST .../hr_webhook/secret


async def test_every_schema_the_webhook_documents_is_in_the_document(client):
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/webhooks/hr/{tenant}"]["post"]
    refs = re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(operation))
    assert "PersonIn" in json.dumps(spec["components"]["schemas"]["EventDataIn"])
    assert set(refs) <= set(spec["components"]["schemas"]), refs
    assert "security" not in operation  # the signature is the authentication


# --- runs and dead letters -----------------------------------------------------------------------


@dataclass
class Parked:
    run_id: uuid.UUID
    letter_id: int


def park_a_run(database: Database, world: World) -> Parked:
    """An onboarding whose account step ran out of retries: its run dead-lettered."""
    with database.session(world.tenant_id, write=True) as session:
        stored_event = webhooks.record_admin_event(
            session, world.admin.actor, LifecycleEventIn.model_validate(event())
        )
        run = runs.open_run(session, stored_event.id)
        step = session.scalars(
            select(SagaStep).where(SagaStep.run_id == run.id, SagaStep.step_id == "account")
        ).one()
        step.status, step.attempts = StepStatus.FAILED, 6
        step.error = "identity: the provider answered 503"
        step.params = {"user_name": "ana.lima@acme.example"}
        run.status, run.error = RunStatus.DEAD_LETTERED, step.error
        stored_event.status = EventStatus.DONE
        session.flush()
        letter = dead_letters.park(session, run, step)
        return Parked(run.id, letter.id)


def letter_status(database: Database, world: World, letter_id: int) -> str:
    with database.session(world.tenant_id) as session:
        letter = session.get(DeadLetter, letter_id)
        assert letter is not None
        return str(letter.status)


async def test_runs_are_read_with_their_saga_log(client, database, world):
    parked = park_a_run(database, world)
    listed = await client.get("/lifecycle/runs", headers=world.admin.auth)
    assert listed.status_code == 200, listed.text
    [run] = listed.json()
    assert (run["id"], run["status"]) == (str(parked.run_id), "dead_lettered")
    one = await client.get(f"/lifecycle/runs/{parked.run_id}", headers=world.admin.auth)
    assert one.status_code == 200, one.text
    steps = {s["step_id"]: s for s in one.json()["steps"]}
    assert (steps["account"]["status"], steps["account"]["attempts"]) == ("failed", 6)
    assert steps["welcome_email"]["status"] == "pending"
    missing = await client.get(f"/lifecycle/runs/{uuid.uuid4()}", headers=world.admin.auth)
    assert (missing.status_code, missing.json()["code"]) == (404, "run_not_found")


async def test_open_dead_letters_are_listed_with_their_error_inputs_and_attempts(
    client, database, world
):
    first, second = park_a_run(database, world), park_a_run(database, world)
    page = await client.get("/dead-letters?limit=1", headers=world.admin.auth)
    assert page.status_code == 200, page.text
    [letter] = page.json()["items"]
    assert (letter["id"], letter["run_id"], letter["step_id"]) == (
        first.letter_id,
        str(first.run_id),
        "account",
    )
    assert (letter["attempts"], letter["inputs"]) == (6, {"user_name": "ana.lima@acme.example"})
    assert "503" in letter["error"]
    rest = await client.get(
        f"/dead-letters?cursor={page.json()['next_cursor']}", headers=world.admin.auth
    )
    assert [x["id"] for x in rest.json()["items"]] == [second.letter_id]
    assert rest.json()["next_cursor"] is None


async def assert_refused_and_still_parked(client, database, world, parked, refused) -> None:
    """A replay nothing could start: a 503, the letter open, its run parked."""
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "workflow_unavailable"
    assert letter_status(database, world, parked.letter_id) == DeadLetterStatus.OPEN
    run = await client.get(f"/lifecycle/runs/{parked.run_id}", headers=world.admin.auth)
    assert run.json()["status"] == "dead_lettered"


async def test_a_replay_without_a_workflow_engine_is_a_503_and_leaves_the_letter_open(
    client, database, world
):
    """The test app has no Prefect API: the replay is refused before anything changes. (A
    replay that starts its flow run is tests/flows' business, on a real Prefect API.)"""
    parked = park_a_run(database, world)
    with temporary_settings(updates={PREFECT_API_URL: ""}):
        refused = await client.post(
            f"/dead-letters/{parked.letter_id}/replay", headers=world.admin.auth
        )
    await assert_refused_and_still_parked(client, database, world, parked, refused)


async def test_a_replay_prefect_cannot_start_reopens_the_letter_for_a_later_replay(
    client, database, world
):
    """A Prefect API is named but nothing answers there: the replay was taken (its transaction
    committed), the flow run could not be started, so the letter is open again, its run parked,
    the reopening audited, and the next replay is accepted as the first was."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

    from deployments.net import free_port
    from quire.audit.models import AuditEntry

    parked = park_a_run(database, world)
    nobody = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings(updates={PREFECT_API_URL: nobody, PREFECT_CLIENT_MAX_RETRIES: 0}):
        refused = await client.post(
            f"/dead-letters/{parked.letter_id}/replay", headers=world.admin.auth
        )
        await assert_refused_and_still_parked(client, database, world, parked, refused)
        with database.session(world.tenant_id) as session:
            actions = session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.object_id == str(parked.run_id))
                .order_by(AuditEntry.id)
            ).all()
        assert actions[-2:] == ["lifecycle.dead_letter_replayed", "lifecycle.dead_letter_reopened"]
        again = await client.post(
            f"/dead-letters/{parked.letter_id}/replay", headers=world.admin.auth
        )
    assert again.status_code == 503, again.text  # taken again, not `already_replayed`


async def test_replaying_a_missing_or_closed_dead_letter_is_a_404_or_a_409(client, database, world):
    parked = park_a_run(database, world)
    with database.session(world.tenant_id, write=True) as session:
        dead_letters.replay(session, world.admin.actor, parked.letter_id)
    with temporary_settings(updates={PREFECT_API_URL: ""}):
        closed = await client.post(
            f"/dead-letters/{parked.letter_id}/replay", headers=world.admin.auth
        )
        missing = await client.post("/dead-letters/999999999/replay", headers=world.admin.auth)
    assert (closed.status_code, closed.json()["code"]) == (409, "already_replayed")
    assert (missing.status_code, missing.json()["code"]) == (404, "dead_letter_not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/webhooks/hr/" + "a" * 65),
        ("POST", "/webhooks/hr/Not_A_Slug"),
        ("GET", "/lifecycle/playbooks/" + "x" * 33),
        ("GET", "/lifecycle/runs/not-a-uuid"),
        ("GET", "/lifecycle/runs?limit=201"),
        ("GET", "/lifecycle/quarantine?cursor=0"),
        ("GET", "/lifecycle/quarantine?cursor=abc"),
        ("GET", "/dead-letters?cursor=9223372036854775808"),
        ("GET", "/dead-letters?limit=0"),
        ("POST", "/dead-letters/0/replay"),
        ("POST", "/dead-letters/9223372036854775808/replay"),
        ("GET", "/lifecycle/playbooks/person.onboard%00"),
    ],
)
async def test_out_of_range_paths_and_queries_are_a_422(client, world, method, path):
    refused = await client.request(method, path, headers=world.admin.auth)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"


# --- roles and tenants ---------------------------------------------------------------------------


def admin_calls(parked: Parked) -> list[tuple[str, str, Any]]:
    """Every admin endpoint, with inputs that would succeed for an admin."""
    return [
        ("POST", "/lifecycle/events", event()),
        ("GET", "/lifecycle/quarantine", None),
        ("GET", "/lifecycle/playbooks/person.onboard", None),
        ("PUT", "/lifecycle/playbooks/person.onboard", {"name": "refused before it is read"}),
        ("GET", "/lifecycle/playbooks/person.onboard/graph.svg", None),
        ("GET", "/lifecycle/playbooks/person.onboard/graph.dot", None),
        ("GET", "/lifecycle/connections", None),
        ("PUT", "/lifecycle/connections/identity", connection("identity")),
        ("DELETE", "/lifecycle/connections/identity", None),
        ("POST", "/lifecycle/connections/hr_webhook/secret", None),
        ("GET", "/lifecycle/runs", None),
        ("GET", f"/lifecycle/runs/{parked.run_id}", None),
        ("GET", "/dead-letters", None),
        ("POST", f"/dead-letters/{parked.letter_id}/replay", None),
    ]


async def test_every_lifecycle_endpoint_refuses_other_roles_and_anonymous_callers(
    client, database, world
):
    parked = park_a_run(database, world)
    wrong = []
    with temporary_settings(updates={PREFECT_API_URL: ""}):
        for method, path, body in admin_calls(parked):
            for role in NON_ADMINS:
                answer = await client.request(
                    method, path, json=body, headers=world.people[role].auth
                )
                if (answer.status_code, answer.json().get("code")) != (403, "wrong_role"):
                    wrong.append(f"{method} {path} as {role}: {answer.status_code}")
            anonymous = await client.request(method, path, json=body)
            if anonymous.status_code != 401:
                wrong.append(f"{method} {path} anonymously: {anonymous.status_code}")
    assert wrong == []
    assert stored(database, world) == (1, 0)  # only the parked run's event
    assert letter_status(database, world, parked.letter_id) == DeadLetterStatus.OPEN


async def test_another_tenants_runs_letters_quarantine_and_settings_are_not_there(
    client, database, world, rival
):
    theirs = park_a_run(database, rival)
    secret = await webhook_secret(client, rival)
    body = b'{"not": "an event"}'
    await client.post(f"/webhooks/hr/{rival.slug}", content=body, headers=signed(secret, body))
    await client.put(
        "/lifecycle/playbooks/person.exit",
        json=(
            await client.get("/lifecycle/playbooks/person.exit", headers=rival.admin.auth)
        ).json()["playbook"],
        headers=rival.admin.auth,
    )
    ours = world.admin.auth

    run = await client.get(f"/lifecycle/runs/{theirs.run_id}", headers=ours)
    assert (run.status_code, run.json()["code"]) == (404, "run_not_found")
    with temporary_settings(updates={PREFECT_API_URL: ""}):
        replay = await client.post(f"/dead-letters/{theirs.letter_id}/replay", headers=ours)
    assert (replay.status_code, replay.json()["code"]) == (404, "dead_letter_not_found")
    for path in ("/lifecycle/runs", "/lifecycle/connections"):
        assert (await client.get(path, headers=ours)).json() == []
    for path in ("/dead-letters", "/lifecycle/quarantine"):
        assert (await client.get(path, headers=ours)).json()["items"] == []
    playbook = await client.get("/lifecycle/playbooks/person.exit", headers=ours)
    assert playbook.json()["version"] == 0
    assert letter_status(database, rival, theirs.letter_id) == DeadLetterStatus.OPEN
