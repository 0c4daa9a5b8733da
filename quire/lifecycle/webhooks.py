"""Events in: HR's signed webhooks (Standard Webhooks), events an admin enters, the quarantine.

`receive` takes one delivery of `POST /webhooks/hr/{tenant}` and answers a `Receipt`:

- **accepted**: verified and valid; the event is stored (`LifecycleEvent`, source "webhook")
  and, in the same transaction, an outbox event names it, so the relay starts its lifecycle run.
- **duplicate**: this tenant has seen the delivery's `webhook-id` before (stored or
  quarantined): acknowledged, nothing stored or started again. Two deliveries racing end the
  same way: the unique (tenant, webhook id) constraint lets exactly one in.
- **quarantined**: verified, but the body is not a usable event (not UTF-8, not JSON, an unknown
  type, a field missing, too long, a control character...): kept in `lifecycle_quarantine`
  with a reason an admin can read (`list_quarantine`), never processed, never dropped silently.

Anything that is not provably from the tenant's HR system raises `quire.errors.Unauthenticated`
(401) and stores nothing at all: missing or malformed headers, a timestamp outside the window,
an unknown tenant or one without a signing secret, no matching signature.

An event to run now gets its outbox event (`quire.lifecycle.events.record_received`:
`lifecycle.event_received`), which the relay turns into one lifecycle flow run. An exit dated
in the future is stored `scheduled` with `effective_on` its date and gets none yet: on its day
the maintenance sweep (`quire.lifecycle.maintenance.release_due_events`) marks it received and
appends that event then.

`record_admin_event` (`POST /lifecycle/events`) stores an admin's event with the same payload
model and the same storage code (source "admin", no webhook id), audited.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from standardwebhooks import Webhook
from standardwebhooks.webhooks import hmac_data

from quire.audit import service as audit
from quire.db import Database, utcnow
from quire.errors import Invalid, Unauthenticated
from quire.lifecycle import connections, events
from quire.lifecycle.models import EventStatus, LifecycleEvent, QuarantinedDelivery
from quire.lifecycle.secrets import Keyring
from quire.people.actor import Actor
from quire.people.models import Role, Tenant
from quire.people.schemas import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from quire.people.service import SLUG
from quire.schemas import Input, Output
from quire.tenancy import tenant_of

DEFAULT_TOLERANCE_SECONDS = 300
BODY_MAX_BYTES = 64 * 1024  # what a quarantined body keeps; a larger delivery is quarantined
REASON_MAX = 2000
REASON_ERRORS = 10
PAGE_MAX = 200
WEBHOOK_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # visible ASCII; fits webhook_id (128)
TIMESTAMP = re.compile(r"^[0-9]{1,12}$")  # whole seconds since the epoch
SIGNATURE_HEADER_MAX = 8192
UNVERIFIED = "webhook_unverified"

# --- the payload -----------------------------------------------------------------------------


def _plain_text(value: str) -> str:
    """No control characters (a newline in a name would reach mail headers) and no lone
    surrogates (a JSON escape can make one; no database stores it)."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(f"must not contain control characters (U+{ord(char):04X} found)")
    return value


def _email(value: str) -> str:
    local, _, domain = value.rpartition("@")
    if len(local) > 64 or len(domain) > 253:  # RFC 5321's limits, as UserDraft checks them
        raise ValueError("an address has at most 64 characters before the @, 253 after")
    return value.lower()


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _utc(value: dt.datetime) -> dt.datetime:
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("the time is outside what UTC can represent") from None


def _text(max_length: int) -> Any:
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length),
        AfterValidator(_plain_text),
    ]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return _plain_text(value)


PersonKey = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_not_blank)
]
Email = Annotated[
    str,
    Field(
        max_length=EMAIL_MAX_LENGTH, pattern=EMAIL_PATTERN, json_schema_extra={"format": "email"}
    ),
    AfterValidator(_email),
]
Name = _text(100)
Label = _text(200)
Group = _text(256)
AttributeValue = _text(1000)
Skill = _text(64)
Skills = Annotated[list[Skill], Field(max_length=50), AfterValidator(_unique)]
Groups = Annotated[list[Group], Field(max_length=200), AfterValidator(_unique)]
AttributeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
EventType = Literal["person.onboard", "person.exit", "person.transfer", "person.update"]


class PersonIn(Input):
    """The person an event is about, as HR describes them. `id` is HR's own id (it keys the
    person's events, in order); emails are lower-cased; names are trimmed, at most 100
    characters, without control characters; `groups` are what the person should be in
    (de-duplicated, in order) and, for a transfer, `old_groups` what they were in; `skills` a
    specialist's (at most 50). Anything else HR wants a playbook to see goes in `attributes`
    (at most 50 text values of up to 1,000 characters). Unknown fields are refused: a typo
    quarantines the delivery rather than silently dropping what it meant to say."""

    id: PersonKey
    email: Email
    given_name: Name
    family_name: Name
    display_name: Label | None = None
    user_name: Label | None = None  # their login at the identity provider, if HR decides it
    manager_email: Email | None = None
    title: Label | None = None
    department: Label | None = None
    groups: Groups = Field(default_factory=list)
    old_groups: Groups | None = None
    skills: Skills = Field(default_factory=list)  # for a specialist's Quire profile
    start_date: dt.date | None = None
    exit_date: dt.date | None = None
    attributes: dict[AttributeName, AttributeValue] = Field(default_factory=dict, max_length=50)

    @model_validator(mode="after")
    def _dates_in_order(self) -> PersonIn:
        if self.start_date and self.exit_date and self.exit_date < self.start_date:
            raise ValueError("exit_date is before start_date")
        return self


class EventDataIn(Input):
    person: PersonIn


class LifecycleEventIn(Input):
    """One thing that happened to one person: what HR's webhook carries and what an admin may
    enter. `timestamp` (with its offset) is when it happened, and orders a person's events.
    A `person.exit` whose `exit_date` is after today (UTC) waits for that day."""

    type: EventType
    timestamp: Annotated[AwareDatetime, AfterValidator(_utc)]
    data: EventDataIn


# --- receipts --------------------------------------------------------------------------------


class ReceiptStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class Receipt:
    """What became of one delivery. `event_id`: the stored event (accepted, or the duplicate of
    an accepted delivery); `event_status`/`effective_on`: received, or scheduled for that day;
    `quarantine_id` and `reason`: quarantined (or the duplicate of a quarantined one)."""

    status: ReceiptStatus
    webhook_id: str
    event_id: uuid.UUID | None = None
    event_status: EventStatus | None = None
    effective_on: dt.date | None = None
    quarantine_id: int | None = None
    reason: str | None = None


class QuarantinedOut(Output):
    id: int
    webhook_id: str
    reason: str
    body: str
    received_at: dt.datetime


# --- verifying -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Signed:
    webhook_id: str
    timestamp: str  # as sent: it is part of what was signed
    signatures: tuple[bytes, ...]  # the v1 signatures offered


class _Secret(Webhook):
    """standardwebhooks' `Webhook`, for the secret's format (`whsec_` + base64) and its HMAC.

    Its own `verify` is not used, for three reasons: it checks the timestamp against the wall
    clock with a hard-coded 5 minutes (Quire's window is `webhook_tolerance_seconds`, around
    the caller's `now`); it decodes the body as UTF-8 before signing, so a correctly signed body
    that is not UTF-8 would raise UnicodeDecodeError instead of being verified and quarantined;
    and a signature without a comma or with bad base64 raises ValueError or binascii.Error
    instead of its WebhookVerificationError. So the headers and the window are checked here,
    and the signature is the library's HMAC-SHA256 of `id.timestamp.body` over the raw bytes,
    compared in constant time. The tests sign with the library's own `Webhook.sign`."""

    def signature(self, signed: _Signed, body: bytes) -> bytes:
        to_sign = b".".join((signed.webhook_id.encode(), signed.timestamp.encode(), body))
        return hmac_data(self._whsecret, to_sign)


def _refused(message: str) -> Unauthenticated:
    return Unauthenticated(message, code=UNVERIFIED)


def _signed(headers: Mapping[str, str]) -> _Signed:
    """The Standard Webhooks headers (names in any case), or Unauthenticated."""
    lower = {name.lower(): value for name, value in headers.items()}
    webhook_id = lower.get("webhook-id")
    timestamp = lower.get("webhook-timestamp")
    signature = lower.get("webhook-signature")
    if not (webhook_id and timestamp and signature):
        raise _refused(
            "a signed webhook needs the webhook-id, webhook-timestamp and webhook-signature "
            "headers (Standard Webhooks)"
        )
    if not WEBHOOK_ID.match(webhook_id):
        raise _refused("webhook-id must be 1-128 visible ASCII characters")
    if not TIMESTAMP.match(timestamp):
        raise _refused("webhook-timestamp must be whole seconds since the epoch")
    if len(signature) > SIGNATURE_HEADER_MAX:
        raise _refused("webhook-signature is too long")
    offered = []
    for token in signature.split():
        version, _, encoded = token.partition(",")
        if version == "v1" and encoded:
            try:
                offered.append(base64.b64decode(encoded, validate=True))
            except binascii.Error:
                continue  # cannot match; another token may
    if not offered:
        raise _refused("webhook-signature holds no v1 signature")
    return _Signed(webhook_id, timestamp, tuple(offered))


def _check_window(signed: _Signed, now: dt.datetime, tolerance_seconds: int) -> None:
    skew = int(signed.timestamp) - now.timestamp()
    if abs(skew) > tolerance_seconds:
        when = "in the past" if skew < 0 else "in the future"
        raise _refused(
            f"webhook-timestamp is {abs(skew):.0f} s {when}; a delivery must be signed within "
            f"{tolerance_seconds} s of now"
        )


def _verify(secret: str, signed: _Signed, body: bytes) -> None:
    expected = _Secret(secret).signature(signed, body)
    # Every offered signature is compared (no early exit on the first match's position).
    matches = [hmac.compare_digest(expected, offered) for offered in signed.signatures]
    if not any(matches):
        raise _refused("no webhook-signature matches this delivery and the tenant's secret")


def _tenant_id(session: Session, tenant: str | uuid.UUID) -> uuid.UUID | None:
    """The tenant a slug (first) or an id names, or None."""
    if isinstance(tenant, str) and SLUG.match(tenant):
        found = session.scalar(select(Tenant.id).where(Tenant.slug == tenant))
        if found is not None:
            return found
    try:
        as_id = tenant if isinstance(tenant, uuid.UUID) else uuid.UUID(tenant)
    except (TypeError, ValueError):
        return None
    return session.scalar(select(Tenant.id).where(Tenant.id == as_id))


# --- parsing ---------------------------------------------------------------------------------


def _storable(text: str, limit: int) -> str:
    """`text` as any database stores it: NULs and lone surrogates spelled out, at most `limit`
    bytes of UTF-8."""
    safe = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace")
    return safe[:limit].decode("utf-8", "ignore")


def _reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for error in errors[:REASON_ERRORS]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {_message(error)}")
    if len(errors) > REASON_ERRORS:
        parts.append(f"and {len(errors) - REASON_ERRORS} more")
    return "; ".join(parts)


def _message(error: Any) -> str:
    """pydantic's message, but a pattern's in words (the regex itself helps nobody)."""
    if error["type"] != "string_pattern_mismatch":
        return str(error["msg"]).removeprefix("Value error, ")
    if error["loc"] and error["loc"][-1] == "[key]":
        return "an attribute name is a letter, then letters, digits or '_' (at most 64)"
    return "is not an email address"


def parse_payload(body: bytes) -> LifecycleEventIn | str:
    """The event in a delivery's body, or why it is not one (a sentence for an admin)."""
    if len(body) > BODY_MAX_BYTES:
        return f"the body is {len(body)} bytes; at most {BODY_MAX_BYTES} are accepted"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not UTF-8 text: byte {exc.start} ({body[exc.start]:#04x}) {exc.reason}"
    try:
        return LifecycleEventIn.model_validate_json(text)
    except ValidationError as exc:
        return _reason(exc)


# --- storing ---------------------------------------------------------------------------------


def _store(
    session: Session,
    event: LifecycleEventIn,
    *,
    source: str,
    webhook_id: str | None,
    received_by: uuid.UUID | None,
    now: dt.datetime,
) -> LifecycleEvent:
    """The event and (unless it waits for its day) its outbox event, in the caller's
    transaction."""
    person = event.data.person
    scheduled = (
        event.type == "person.exit"
        and person.exit_date is not None
        and person.exit_date > now.astimezone(dt.UTC).date()
    )
    row = LifecycleEvent(
        tenant_id=tenant_of(session),
        webhook_id=webhook_id,
        event_type=event.type,
        person_key=person.id,
        occurred_at=event.timestamp,
        effective_on=person.exit_date if scheduled else None,
        payload=event.model_dump(mode="json"),
        source=source,
        received_by=received_by,
        received_at=now,
        status=EventStatus.SCHEDULED if scheduled else EventStatus.RECEIVED,
    )
    session.add(row)
    session.flush()  # a duplicate webhook id fails here, before the outbox entry
    if not scheduled:
        events.record_received(session, row.id, row.event_type)
    return row


def event_summary(row: LifecycleEvent) -> dict[str, Any]:
    """What the audit log says of an event an admin entered: ids and dates, nobody's details."""
    return {
        "id": str(row.id),
        "type": row.event_type,
        "person_key": row.person_key,
        "status": str(row.status),
        "effective_on": row.effective_on.isoformat() if row.effective_on else None,
    }


def _accepted(row: LifecycleEvent) -> Receipt:
    return Receipt(
        ReceiptStatus.ACCEPTED,
        row.webhook_id or "",
        event_id=row.id,
        event_status=EventStatus(row.status),
        effective_on=row.effective_on,
    )


def _seen(session: Session, webhook_id: str) -> Receipt | None:
    """The duplicate receipt if this tenant has seen `webhook_id`, else None."""
    event = session.scalar(select(LifecycleEvent).where(LifecycleEvent.webhook_id == webhook_id))
    if event is not None:
        return Receipt(
            ReceiptStatus.DUPLICATE,
            webhook_id,
            event_id=event.id,
            event_status=EventStatus(event.status),
            effective_on=event.effective_on,
        )
    quarantined = session.scalar(
        select(QuarantinedDelivery)
        .where(QuarantinedDelivery.webhook_id == webhook_id)
        .order_by(QuarantinedDelivery.id)
        .limit(1)
    )
    if quarantined is not None:
        return Receipt(
            ReceiptStatus.DUPLICATE,
            webhook_id,
            quarantine_id=quarantined.id,
            reason=quarantined.reason,
        )
    return None


def receive(
    database: Database,
    tenant: str | uuid.UUID,
    headers: Mapping[str, str],
    body: bytes,
    *,
    keyring: Keyring,
    now: dt.datetime | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> Receipt:
    """One delivery of HR's webhook for `tenant` (its slug or id): see the module docstring.

    `headers` are the request's (any mapping; names in any case), `body` its bytes as received
    (the signature covers them exactly). `now` (default: the clock) is what the timestamp must
    be within `tolerance_seconds` of (`settings.webhook_tolerance_seconds`), either way, and
    what "an exit dated in the future" is measured against. Verification runs in read-only
    transactions: an unauthenticated caller never takes a write lock.
    """
    now = utcnow() if now is None else now
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    signed = _signed(headers)
    _check_window(signed, now, tolerance_seconds)
    with database.session(None) as session:
        tenant_id = _tenant_id(session, tenant)
        secret = None
        if tenant_id is not None:
            session.info["tenant_id"] = tenant_id
            secret = connections.webhook_secret(session, keyring)
    if tenant_id is None or secret is None:
        # One answer for both: an unauthenticated caller learns nothing about which tenants exist.
        raise _refused("this tenant accepts no signed webhooks (unknown, or no secret configured)")
    _verify(secret, signed, body)
    parsed = parse_payload(body)
    try:
        with database.session(tenant_id, write=True) as session:
            seen = _seen(session, signed.webhook_id)
            if seen is not None:
                return seen
            if isinstance(parsed, str):
                return _quarantine(session, signed.webhook_id, parsed, body, now)
            row = _store(
                session,
                parsed,
                source="webhook",
                webhook_id=signed.webhook_id,
                received_by=None,
                now=now,
            )
            return _accepted(row)
    except IntegrityError:
        # A concurrent delivery of the same webhook id committed first (PostgreSQL: the unique
        # constraint made this insert wait for it, then refused it).
        with database.session(tenant_id) as session:
            seen = _seen(session, signed.webhook_id)
        if seen is None:
            raise
        return seen


def _quarantine(
    session: Session, webhook_id: str, reason: str, body: bytes, now: dt.datetime
) -> Receipt:
    row = QuarantinedDelivery(
        tenant_id=tenant_of(session),
        webhook_id=webhook_id,
        reason=_storable(reason, REASON_MAX),
        body=_storable(body.decode("utf-8", "backslashreplace"), BODY_MAX_BYTES),
        received_at=now,
    )
    session.add(row)
    session.flush()
    return Receipt(ReceiptStatus.QUARANTINED, webhook_id, quarantine_id=row.id, reason=row.reason)


def record_admin_event(
    session: Session, actor: Actor, payload: LifecycleEventIn, *, now: dt.datetime | None = None
) -> LifecycleEvent:
    """An event an admin enters (`POST /lifecycle/events`): stored and started exactly as a
    webhook's would be (source "admin", no webhook id), and audited."""
    actor.require(Role.ADMIN)
    row = _store(
        session,
        payload,
        source="admin",
        webhook_id=None,
        received_by=None if actor.is_system else actor.user_id,
        now=utcnow() if now is None else now,
    )
    audit.record(
        session,
        actor,
        "lifecycle.event_recorded",
        events.AGGREGATE,
        row.id,
        after=event_summary(row),
    )
    return row


def list_quarantine(
    session: Session, cursor: int | str | None = None, limit: int = 50
) -> tuple[list[QuarantinedDelivery], str | None]:
    """A page of the session tenant's quarantined deliveries, newest first, and the cursor of
    the next page (keyset on the id: paging while deliveries arrive neither repeats nor skips)."""
    if isinstance(limit, bool) or not 1 <= limit <= PAGE_MAX:
        raise Invalid(f"limit: 1 to {PAGE_MAX}", code="invalid_filter")
    before_id = audit.check_cursor(cursor)
    stmt = select(QuarantinedDelivery)
    if before_id is not None:
        stmt = stmt.where(QuarantinedDelivery.id < before_id)
    rows = list(session.scalars(stmt.order_by(QuarantinedDelivery.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, str(rows[-1].id)
    return rows, None
