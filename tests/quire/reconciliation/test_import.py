"""Importing a bank statement file: stored once (the same bytes, or the same statement in another
file, change nothing), refused whole with a clear 422 when it is not the tenant's account or
does not parse, and audited. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, update

from quire.audit.models import AuditEntry
from quire.errors import Forbidden, Invalid
from quire.payroll.models import PayrollProfile
from quire.reconciliation import service
from quire.reconciliation.models import BankLine, BankStatement
from tests.quire.payroll.support import build_payroll_world
from tests.quire.payroll.test_runs import finance
from tests.quire.reconciliation.statement_samples import sample

OUR_ACCOUNT = "DE89370400440532013000"  # the account of the sample statements


@pytest.fixture
def pw(database):
    pw = build_payroll_world(database, f"i{uuid.uuid4().hex[:8]}")
    with database.session(pw.tenant_id, write=True) as session:
        session.execute(update(PayrollProfile).values(debtor_iban=OUR_ACCOUNT))
    return pw


def counts(pw) -> tuple[int, int]:
    with pw.database.session(pw.tenant_id) as session:
        return (
            session.scalar(select(func.count()).select_from(BankStatement)),
            session.scalar(select(func.count()).select_from(BankLine)),
        )


def upload(pw, name: str, content: bytes | None = None, actor=None):
    with pw.database.session(pw.tenant_id, write=True) as session:
        stored = service.import_statements(
            session, actor or finance(pw), name, sample(name) if content is None else content
        )
        return [(s.id, s.statement_id, s.line_count) for s in stored]


def test_a_camt_statement_is_stored_with_its_booked_lines_and_audited(pw):
    [(statement_id, bank_id, lines)] = upload(pw, "camt053_v02_returned_payout.xml")
    assert (bank_id, lines) == ("STMT-V02-2026-12-01", 3)
    with pw.database.session(pw.tenant_id) as session:
        stored = session.scalars(
            select(BankLine)
            .where(BankLine.statement_id == statement_id)
            .order_by(BankLine.position)
        ).all()
        assert [(line.amount_minor, line.returned) for line in stored] == [
            (-125_000, False),
            (125_000, True),
            (9_999, False),
        ]
        assert stored[0].end_to_end_id == "QP202612A1L000001"
        audited = session.scalar(
            select(AuditEntry).where(AuditEntry.action == "bank_statement.imported")
        )
        assert audited.after["lines"] == 3


def test_uploading_the_same_file_again_changes_nothing(pw):
    first = upload(pw, "camt053_v02_returned_payout.xml")
    before = counts(pw)
    assert upload(pw, "camt053_v02_returned_payout.xml") == first
    assert counts(pw) == before


def test_a_statement_for_another_account_is_refused_and_nothing_is_stored(pw):
    with pytest.raises(Invalid) as refused:
        upload(pw, "camt053_v05_reversal.xml")
    assert refused.value.code == "statement_wrong_account"
    assert "ACC-77-001" in refused.value.message
    assert counts(pw) == (0, 0)


def test_a_file_with_one_foreign_statement_among_several_stores_none(pw):
    with pytest.raises(Invalid):
        upload(pw, "mt940_three_statements.sta")  # EUR ours; JPY and KWD accounts are not
    assert counts(pw) == (0, 0)


@pytest.mark.parametrize(
    "content",
    [b"", b"<Document", b":20:X\n:25:DE89370400440532013000\n:28C:1\n", b"\x00\xff garbage"],
    ids=["empty", "truncated-xml", "truncated-mt940", "binary"],
)
def test_a_malformed_file_is_a_clear_refusal_and_stores_nothing(pw, content):
    with pytest.raises(Invalid):
        upload(pw, "bad.xml", content)
    assert counts(pw) == (0, 0)


def test_only_finance_imports(pw):
    with pytest.raises(Forbidden):
        upload(pw, "camt053_v02_returned_payout.xml", actor=pw.world.manager.actor)
    assert counts(pw) == (0, 0)
