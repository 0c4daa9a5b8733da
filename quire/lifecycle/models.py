"""Lifecycle's tables: what HR told us (events, and what could not be read: quarantine), how a
tenant wants each event handled (playbooks, versioned), where its systems are and their secrets
(connections, encrypted), and what each run did (runs, and per step the saga log: the step's
inputs, its output and how to undo it), what is parked for an admin (dead letters), and the
circuit breaker every worker shares, per provider and tenant.

The saga log is the durable part: a step's undo is committed as soon as the step succeeds, so a
compensation needs nothing but these rows, whichever process started the run (Prefect's own
rollback hooks live in the process, and die with it).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from quire.db import Base, BigIntId, JSONType, utcnow
from quire.tenancy import TenantScoped

EVENT_TYPES = ("person.onboard", "person.exit", "person.transfer", "person.update")


class EventStatus(enum.StrEnum):
    RECEIVED = "received"  # stored; the relay has not started its run yet
    SCHEDULED = "scheduled"  # dated in the future: runs on its day
    STARTED = "started"  # its lifecycle run exists
    DONE = "done"  # its run finished (completed, compensated or dead-lettered)


class RunStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for the person's earlier events
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"  # an exit that parked some steps
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"  # failed for good (or cancelled); every undo done
    DEAD_LETTERED = "dead_lettered"  # parked for an admin, compensated as far as it could be
    CANCELLED = "cancelled"


FINISHED = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.COMPLETED_WITH_FAILURES,
        RunStatus.COMPENSATED,
        RunStatus.DEAD_LETTERED,
        RunStatus.CANCELLED,
    }
)


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"  # its `when` was false, or its provider is not configured
    FAILED = "failed"  # out of retries
    PARKED = "parked"  # failed, but the playbook continues past failures (exit)
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class DeadLetterStatus(enum.StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class LifecycleEvent(TenantScoped, Base):
    """One thing that happened to one person, as HR (or an admin) told us. A webhook's id is
    stored once per tenant: a delivery seen before is acknowledged and not processed again."""

    __tablename__ = "lifecycle_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "webhook_id"),
        Index("ix_lifecycle_events_person", "tenant_id", "person_key", "occurred_at"),
        Index("ix_lifecycle_events_due", "status", "effective_on"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[str | None] = mapped_column(String(128))  # None: entered by an admin
    event_type: Mapped[str] = mapped_column(String(32))
    person_key: Mapped[str] = mapped_column(String(128))  # HR's id of the person
    occurred_at: Mapped[dt.datetime]
    effective_on: Mapped[dt.date | None] = mapped_column(Date)  # an exit dated in the future
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    source: Mapped[str] = mapped_column(String(16))  # webhook | admin
    received_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status: Mapped[EventStatus] = mapped_column(String(16), default=EventStatus.RECEIVED)


class QuarantinedDelivery(TenantScoped, Base):
    """A signed delivery whose payload could not be used, kept with the reason: never dropped
    silently, never processed."""

    __tablename__ = "lifecycle_quarantine"
    __table_args__ = (
        Index("ix_lifecycle_quarantine_tenant_id_id", "tenant_id", "id"),
        {"sqlite_autoincrement": True},  # ids are the keyset cursor: never reused
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # as received (valid UTF-8, at most 64 KiB)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Playbook(TenantScoped, Base):
    """One version of a tenant's playbook for one event type; the highest version is in force.
    A version is never changed: a PUT adds the next one."""

    __tablename__ = "lifecycle_playbooks"
    __table_args__ = (UniqueConstraint("tenant_id", "event_type", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Connection(TenantScoped, Base):
    """Where one of a tenant's providers is and how to log in: the settings as one AES-GCM
    ciphertext (nonce + ciphertext + tag), the key it was sealed with named by `key_id` so a
    rotation can re-seal them. Never returned by the API."""

    __tablename__ = "lifecycle_connections"
    __table_args__ = (UniqueConstraint("tenant_id", "provider"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(32))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LifecycleRun(TenantScoped, Base):
    """One event's playbook carried out: the playbook as it was when the run began (a later
    PUT does not change a run in flight)."""

    __tablename__ = "lifecycle_runs"
    __table_args__ = (
        UniqueConstraint("event_id"),
        Index("ix_lifecycle_runs_person", "tenant_id", "person_key", "status"),
        Index("ix_lifecycle_runs_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lifecycle_events.id"))
    event_type: Mapped[str] = mapped_column(String(32))
    person_key: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[dt.datetime]  # the event's, for per-person order
    playbook_version: Mapped[int] = mapped_column(Integer)
    playbook: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[RunStatus] = mapped_column(String(32), default=RunStatus.PENDING)
    flow_run_id: Mapped[uuid.UUID | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class SagaStep(TenantScoped, Base):
    """One step of one run: the saga log. `undo` is committed with the step's success, before
    any later step runs, so compensating needs nothing else."""

    __tablename__ = "lifecycle_saga_steps"
    __table_args__ = (
        UniqueConstraint("run_id", "step_id"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lifecycle_runs.id"))
    step_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)  # order of completion, for reverse undo
    status: Mapped[StepStatus] = mapped_column(String(32), default=StepStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    undo: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    compensation_kind: Mapped[str | None] = mapped_column(String(64))
    compensation_attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    compensated_at: Mapped[dt.datetime | None]


class DeadLetter(TenantScoped, Base):
    """A step out of retries, parked with its error, inputs and attempts for an admin to
    replay (the run again from that step, the steps that succeeded kept)."""

    __tablename__ = "lifecycle_dead_letters"
    __table_args__ = (
        Index("ix_lifecycle_dead_letters_tenant_status", "tenant_id", "status", "id"),
        # One open dead letter per run: a replay closes it before the run goes again.
        Index(
            "uq_lifecycle_dead_letters_open_run",
            "run_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
        {"sqlite_autoincrement": True},  # ids are the keyset cursor: never reused
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lifecycle_runs.id"))
    step_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer)
    status: Mapped[DeadLetterStatus] = mapped_column(String(16), default=DeadLetterStatus.OPEN)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    replayed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    replayed_at: Mapped[dt.datetime | None]


class CircuitBreaker(TenantScoped, Base):
    """One provider's breaker for one tenant, shared by every worker through this row.

    Closed: calls go through; `failures` counts consecutive transient failures. Open (at the
    threshold): calls fail fast until `open_until`. Half-open after that: one probe (the caller
    that moves the row to half-open) goes through; its success closes the breaker, its failure
    opens it again."""

    __tablename__ = "lifecycle_breakers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider"),
        CheckConstraint("failures >= 0", name="failures_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    state: Mapped[BreakerState] = mapped_column(String(16), default=BreakerState.CLOSED)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    open_until: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
