"""The audit log as the kernel offers it: `record` appends one entry in the caller's transaction,
the database refuses to change or remove one, and `list_entries` reads the tenant's entries
newest first, filtered and paged by id, to admins (all) and finance (the finance entries)."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from quire.audit import service as audit
from quire.audit.models import AuditEntry
from quire.audit.service import AuditFilter, list_entries, record
from quire.correlation import correlated, current_request_id
from quire.db import Database
from quire.errors import Forbidden, Invalid
from quire.people.actor import Actor
from quire.tenancy import ALL_TENANTS
from tests.support.world import World, build_world


@pytest.fixture
def acme(database: Database) -> World:
    return build_world(database, "acme", specialists=1)


@pytest.fixture
def globex(database: Database) -> World:
    return build_world(database, "globex", specialists=1)


def write(database: Database, world: World, *entries: tuple[str, str, str]) -> list[int]:
    """Record (action, object_type, object_id) entries as the world's admin; their ids."""
    with database.session(world.tenant_id, write=True) as s:
        return [record(s, world.admin.actor, *entry).id for entry in entries]


def count(database: Database) -> int:
    with database.session(None) as s:
        return s.scalar(
            select(func.count()).select_from(AuditEntry).execution_options(**ALL_TENANTS)
        )


def page(database: Database, world: World, actor: Actor, f: AuditFilter, **kw) -> list[str]:
    with database.session(world.tenant_id) as s:
        entries, _ = list_entries(s, actor, f, **kw)
        return [e.action for e in entries]


class Colour(enum.StrEnum):
    RED = "red"


# --- record --------------------------------------------------------------------------------------


def test_an_entry_keeps_actor_roles_request_id_and_changes_as_json(database, acme):
    run = uuid.uuid4()
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with database.session(acme.tenant_id, write=True) as s, correlated("flow-run:42"):
        entry = record(
            s,
            acme.finance.actor,
            "payroll_run.approved",
            "payroll_run",
            run,
            before={"status": "awaiting_approval", "rate": Decimal("1.0850")},
            after={"status": Colour.RED, "at": at, "by": acme.finance.id, "tags": {"b", "a"}},
        )
        entry_id = entry.id
    with database.session(acme.tenant_id) as s:
        stored = s.get(AuditEntry, entry_id)
        assert stored is not None
        assert (stored.actor_id, stored.actor_roles) == (acme.finance.id, ["finance"])
        assert (stored.action, stored.object_type, stored.object_id) == (
            "payroll_run.approved",
            "payroll_run",
            str(run),
        )
        assert stored.request_id == "flow-run:42"
        assert stored.domain == "finance"
        assert stored.tenant_id == acme.tenant_id
        assert stored.before == {"status": "awaiting_approval", "rate": "1.0850"}
        assert stored.after == {
            "status": "red",
            "at": "2026-01-02T03:04:05+00:00",
            "by": str(acme.finance.id),
            "tags": ["a", "b"],
        }
        assert stored.at.tzinfo is not None


def test_the_request_id_defaults_to_the_current_correlation_id_and_can_be_given(database, acme):
    assert current_request_id() is None
    with database.session(acme.tenant_id, write=True) as s:
        outside = record(s, acme.admin.actor, "user.created", "user", acme.manager.id)
        with correlated("req-1"):
            inside = record(s, acme.admin.actor, "user.created", "user", acme.manager.id)
            given = record(
                s, acme.admin.actor, "user.created", "user", acme.manager.id, request_id="req-2"
            )
        assert (outside.request_id, inside.request_id, given.request_id) == (
            None,
            "req-1",
            "req-2",
        )
    assert current_request_id() is None


def test_the_system_records_without_an_actor_even_from_a_session_without_a_tenant(database, acme):
    with database.session(acme.tenant_id, write=True) as s:
        by_nobody = record(s, None, "payout_hold.lifted", "specialist", acme.specialist.id)
    with database.session(None, write=True) as s:  # a job working across tenants
        by_system = record(
            s, Actor.system(acme.tenant_id), "payroll_run.started", "payroll_run", "r-1"
        )
        with pytest.raises(ValueError, match="no tenant"):
            record(s, None, "payroll_run.started", "payroll_run", "r-2")
    for entry in (by_nobody, by_system):
        assert (entry.actor_id, entry.actor_roles, entry.tenant_id) == (None, [], acme.tenant_id)


def test_an_entry_rolls_back_with_the_change_it_describes(database, acme):
    before = count(database)

    def failing_change() -> None:
        with database.session(acme.tenant_id, write=True) as s:
            record(s, acme.admin.actor, "user.created", "user", acme.manager.id)
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert count(database) == before


def test_record_refuses_what_it_cannot_store_faithfully(database, acme, globex):
    before = count(database)
    with database.session(acme.tenant_id, write=True) as s:
        for action in ("created", "User.created", "user.", "user created", "a." + "b" * 64):
            with pytest.raises(ValueError, match="action"):
                record(s, acme.admin.actor, action, "user", "x")
        with pytest.raises(ValueError, match="object_id"):
            record(s, acme.admin.actor, "user.created", "user", "x" * 65)
        with pytest.raises(ValueError, match="object_type"):
            record(s, acme.admin.actor, "user.created", "", "x")
        with pytest.raises(TypeError, match="bytes"):
            record(s, acme.admin.actor, "user.created", "user", "x", after={"raw": b"\x00"})
        for value in ("a\x00b", float("nan"), float("inf")):
            with pytest.raises(ValueError, match=r"NUL|finite"):
                record(s, acme.admin.actor, "user.created", "user", "x", after={"v": [value]})
        with pytest.raises(ValueError, match="NUL"):
            record(s, acme.admin.actor, "user.created", "user", "x\x00")
        with pytest.raises(ValueError, match="another tenant"):
            record(s, globex.admin.actor, "user.created", "user", "x")
    assert count(database) == before


@pytest.mark.parametrize(
    ("action", "domain"),
    [
        ("payout_details.changed", "finance"),
        ("payout_hold.set", "finance"),
        ("payroll_profile.changed", "finance"),
        ("payroll_run.reversed", "finance"),
        ("payroll_line.reversed", "finance"),
        ("bank_statement.imported", "finance"),
        ("reconciliation.matched", "finance"),
        ("ledger_period.closed", "finance"),
        ("user.created", "people"),
        ("api_key.revoked", "auth"),
        ("playbook.started", "lifecycle"),
        ("lifecycle.advanced", "lifecycle"),
        ("connection.added", "lifecycle"),
        ("order.cancelled", "other"),
        ("payroll.x", "other"),
    ],
)
def test_an_actions_first_segment_decides_its_domain(action, domain):
    assert audit.domain_of(action) == domain


# --- append-only, enforced by the database -------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "verb"),
    [
        ("UPDATE audit_log SET action = 'user.forged' WHERE id = :id", "UPDATE"),
        ("UPDATE audit_log SET after = NULL", "UPDATE"),
        ("DELETE FROM audit_log WHERE id = :id", "DELETE"),
        ("DELETE FROM audit_log", "DELETE"),
    ],
)
def test_raw_sql_cannot_edit_or_delete_an_entry(database, acme, statement, verb):
    [entry_id] = write(database, acme, ("user.created", "user", str(acme.manager.id)))
    with (
        pytest.raises(IntegrityError, match=f"audit log: {verb} on audit_log is not allowed"),
        database.engine.begin() as c,
    ):
        c.execute(text(statement), {"id": entry_id})
    with database.session(acme.tenant_id) as s:
        assert s.get(AuditEntry, entry_id).action == "user.created"


@pytest.mark.postgres
def test_postgres_refuses_truncate_and_ignores_session_replication_role(acme_pg):
    database = acme_pg
    with pytest.raises(IntegrityError, match="TRUNCATE on audit_log"), database.engine.begin() as c:
        c.execute(text("TRUNCATE audit_log"))

    def as_replica() -> None:
        with database.engine.begin() as c:
            c.execute(text("SET LOCAL session_replication_role = replica"))
            c.execute(text("UPDATE audit_log SET action = 'user.forged'"))

    with pytest.raises(IntegrityError, match="UPDATE on audit_log"):
        as_replica()
    with pytest.raises(IntegrityError, match="DELETE on audit_log"), database.engine.begin() as c:
        c.execute(text("DELETE FROM audit_log WHERE false"))  # statement level: even no rows
    assert count(database) == 1


@pytest.fixture
def acme_pg(pg_url: str):
    database = Database(pg_url)
    world = build_world(database, "acme", specialists=1)
    write(database, world, ("user.created", "user", str(world.manager.id)))
    yield database
    database.dispose()


# --- reading: who sees what ----------------------------------------------------------------------


def test_admins_see_every_entry_finance_the_finance_ones_and_nobody_else_any(database, acme):
    write(
        database,
        acme,
        ("user.created", "user", "u1"),
        ("payroll_run.started", "payroll_run", "r1"),
        ("api_key.minted", "api_key", "k1"),
        ("payout_hold.set", "specialist", "s1"),
    )
    everything = AuditFilter()
    assert page(database, acme, acme.admin.actor, everything) == [
        "payout_hold.set",
        "api_key.minted",
        "payroll_run.started",
        "user.created",
    ]
    assert page(database, acme, acme.finance.actor, everything) == [
        "payout_hold.set",
        "payroll_run.started",
    ]
    # Finance asking for other domains' entries by name still sees none of them.
    by_type = AuditFilter(object_type="user")
    assert page(database, acme, acme.finance.actor, by_type) == []
    for name in ("manager", "reviewer", "specialist"):
        with pytest.raises(Forbidden), database.session(acme.tenant_id) as s:
            list_entries(s, acme.people[name].actor, everything)
        with pytest.raises(Forbidden), database.session(acme.tenant_id) as s:
            audit.export_window(s, acme.people[name].actor, everything)


def test_a_tenant_never_sees_another_tenants_entries(database, acme, globex):
    write(database, acme, ("payroll_run.started", "payroll_run", "acme-run"))
    write(database, globex, ("payroll_run.started", "payroll_run", "globex-run"))
    for world in (acme, globex):
        for actor in (world.admin.actor, world.finance.actor):
            with database.session(world.tenant_id) as s:
                entries, _ = list_entries(s, actor, AuditFilter())
                window = audit.export_window(s, actor, AuditFilter())
                exported, _ = list_entries(
                    s, actor, AuditFilter(), cursor=window.start, down_to=window.lowest
                )
            assert [e.object_id for e in entries] == [f"{world.slug}-run"]
            assert [e.object_id for e in exported] == [f"{world.slug}-run"]


# --- reading: filters and pages ------------------------------------------------------------------


def test_filters_narrow_by_actor_object_action_and_time(database, acme):
    with database.session(acme.tenant_id, write=True) as s:
        record(s, acme.admin.actor, "payroll_run.started", "payroll_run", "r1")
        record(s, acme.finance.actor, "payroll_run.approved", "payroll_run", "r1")
        record(s, acme.finance.actor, "payroll_run.approved", "payroll_run", "r2")
        record(s, acme.admin.actor, "payroll_line.reversed", "payroll_line", "l1")
        # An underscore in a prefix is literal: "payroll_run.*" is not "payroll?run.*".
        record(s, acme.admin.actor, "payrollxrun.started", "payroll_run", "r9")
    admin = acme.admin.actor

    def actions(**kw) -> list[str]:
        return page(database, acme, admin, AuditFilter(**kw))

    assert actions(actor_id=acme.finance.id) == ["payroll_run.approved"] * 2
    assert actions(object_type="payroll_run", object_id="r1") == [
        "payroll_run.approved",
        "payroll_run.started",
    ]
    assert actions(action="payroll_run.approved") == ["payroll_run.approved"] * 2
    assert actions(action="payroll_run.*") == [
        "payroll_run.approved",
        "payroll_run.approved",
        "payroll_run.started",
    ]
    assert actions(action="payroll.*") == []
    assert actions(action="payroll_run") == []  # exact: no such action
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    assert len(actions(since=now - hour)) == 5
    assert actions(since=now + hour) == []
    assert actions(until=now - hour) == []
    assert len(actions(since=now - hour, until=now + hour)) == 5
    assert actions(since=now + hour, until=now - hour) == []


def test_time_bounds_beyond_the_representable_range_mean_no_bound_or_nothing(database, acme):
    write(database, acme, ("user.created", "user", "u1"))
    admin = acme.admin.actor
    far_past = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    far_future = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert page(database, acme, admin, AuditFilter(since=far_past)) == ["user.created"]
    assert page(database, acme, admin, AuditFilter(until=far_future)) == ["user.created"]
    assert page(database, acme, admin, AuditFilter(since=far_future)) == []
    assert page(database, acme, admin, AuditFilter(until=far_past)) == []


@pytest.mark.parametrize(
    "bad",
    [
        AuditFilter(action="Payroll_run.*"),
        AuditFilter(action="payroll_run.*.x"),
        AuditFilter(action="*"),
        AuditFilter(action="a." + "b" * 64),
        AuditFilter(object_id="x" * 65),
        AuditFilter(object_type="t\x00"),
        AuditFilter(since=dt.datetime(2026, 1, 1)),  # naive
        AuditFilter(until=dt.datetime(2026, 1, 1)),
    ],
)
def test_a_bad_filter_is_invalid(database, acme, bad):
    with pytest.raises(Invalid) as refused, database.session(acme.tenant_id) as s:
        list_entries(s, acme.admin.actor, bad)
    assert refused.value.code == "invalid_filter"


@pytest.mark.parametrize("cursor", ["0", "-1", "abc", "1.5", "\uff11", str(2**63), 0, 2**63, True])
def test_a_cursor_that_names_no_position_is_invalid(database, acme, cursor):
    with pytest.raises(Invalid) as refused, database.session(acme.tenant_id) as s:
        list_entries(s, acme.admin.actor, AuditFilter(), cursor=cursor)
    assert refused.value.code == "invalid_cursor"


def test_pages_follow_the_cursor_newest_first_without_repeats_or_gaps(database, acme):
    ids = write(database, acme, *[("user.created", "user", f"u{i}") for i in range(11)])
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        with database.session(acme.tenant_id) as s:
            entries, cursor = list_entries(
                s, acme.admin.actor, AuditFilter(), cursor=cursor, limit=4
            )
        seen += [e.id for e in entries]
        pages += 1
        if pages == 1:  # written while paging: above the first page, never in a later one
            write(database, acme, ("user.created", "user", "late"))
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert pages == 3


# --- export --------------------------------------------------------------------------------------


def test_an_export_window_is_fixed_when_it_starts_and_says_where_to_continue(database, acme):
    ids = write(database, acme, *[("user.created", "user", f"u{i}") for i in range(5)])
    with database.session(acme.tenant_id) as s:
        window = audit.export_window(s, acme.admin.actor, AuditFilter(), max_rows=3)
    assert window.start == str(ids[-1] + 1)
    assert (window.lowest, window.next_cursor) == (ids[2], str(ids[2]))
    write(database, acme, ("user.created", "user", "late"))
    with database.session(acme.tenant_id) as s:
        first, _ = list_entries(
            s, acme.admin.actor, AuditFilter(), cursor=window.start, down_to=window.lowest
        )
        rest = audit.export_window(s, acme.admin.actor, AuditFilter(), cursor=window.next_cursor)
    assert [e.id for e in first] == ids[:1:-1]
    assert (rest.start, rest.lowest, rest.next_cursor) == (str(ids[1] + 1), None, None)
    with database.session(acme.tenant_id) as s:
        nothing = audit.export_window(s, acme.admin.actor, AuditFilter(object_id="none"))
    assert (nothing.start, nothing.lowest, nothing.next_cursor) == (None, None, None)


def test_csv_has_one_row_per_entry_with_json_changes_and_no_formulas(database, acme):
    with database.session(acme.tenant_id, write=True) as s:
        entry = record(
            s,
            acme.admin.actor,
            "api_key.revoked",
            "api_key",
            "k1",
            before={"name": "=HYPERLINK(1)", "revoked_at": None},
            after={"name": "=HYPERLINK(1)", "revoked_at": "2026-01-01"},
            request_id="-danger",
        )
        system = record(s, None, "user.created", "user", "u1")
        rendered = audit.render_csv([entry, system])
    rows = list(csv.reader(io.StringIO(rendered)))
    assert rendered.endswith("\r\n")
    assert rows[0] == list(audit.CSV_COLUMNS)
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["id"] == str(entry.id)
    assert dt.datetime.fromisoformat(first["at"]) == entry.at
    assert first["actor_id"] == str(acme.admin.id)
    assert (first["action"], first["object_type"], first["object_id"]) == (
        "api_key.revoked",
        "api_key",
        "k1",
    )
    assert first["request_id"] == "'-danger"
    assert json.loads(first["before"]) == {"name": "=HYPERLINK(1)", "revoked_at": None}
    assert json.loads(first["after"])["revoked_at"] == "2026-01-01"
    second = dict(zip(rows[0], rows[2], strict=True))
    assert (second["actor_id"], second["request_id"], second["before"]) == ("", "", "")
    assert audit.render_csv([], header=False) == ""
