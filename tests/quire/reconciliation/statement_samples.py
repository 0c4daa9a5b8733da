"""The sample bank statement files under data/, and small ways to read them in tests."""

from __future__ import annotations

from pathlib import Path

from quire.reconciliation.bank_lines import BankLine, Statement
from quire.reconciliation.statements import parse_statements

DATA = Path(__file__).parent / "data"
CAMT_V02 = "camt053_v02_returned_payout.xml"
CAMT_V05 = "camt053_v05_reversal.xml"
CAMT_V08 = "camt053_v08_three_accounts.xml"
MT940 = "mt940_three_statements.sta"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parsed(name: str) -> tuple[Statement, ...]:
    return parse_statements(sample(name))


def edited(name: str, old: bytes, new: bytes) -> bytes:
    """The sample with one passage changed (it must be there: a test that edits nothing
    would prove nothing)."""
    content = sample(name)
    assert old in content, old
    return content.replace(old, new, 1)


def line_by_e2e(statement: Statement, end_to_end_id: str) -> BankLine:
    (line,) = [line for line in statement.lines if line.end_to_end_id == end_to_end_id]
    return line
