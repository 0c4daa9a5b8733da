"""A posted run's files for the bank, written once and kept with their digests.

EUR lines paid to an IBAN go in a SEPA credit transfer (pain.001.001.03); every other currency
in one ISO 20022 pain.001.001.09 file with a payment information block per currency; a CSV
summary lists every payment. Each file is validated against its XSD before it is written,
stored under the reports directory, and recorded with its sha256, message id and line count;
the lines carry the end-to-end ids the bank will echo in its statement.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from quire.db import utcnow
from quire.errors import Conflict, NotFound
from quire.payroll import payout_files, periods
from quire.payroll.models import (
    FileStatus,
    LineStatus,
    PayoutScheme,
    PayrollFile,
    PayrollLine,
    PayrollRun,
)
from quire.payroll.payout_details import SEPA_COUNTRIES
from quire.payroll.runs import MONEY_MOVED, get_run, profile


def run_directory(run: PayrollRun) -> Path:
    """Relative to the reports directory: payroll/<tenant>/<period>-a<attempt>/."""
    return Path("payroll") / str(run.tenant_id) / f"{run.period}-a{run.attempt}"


def message_id(run: PayrollRun, kind: str) -> str:
    """ISO 20022 MsgId (Max35Text), unique per file: run, attempt and the file's kind."""
    return f"QUIRE-{periods.compact(run.period)}-A{run.attempt}-{kind}-{run.id.hex[:8]}"[:35]


def files_of(session: Session, run_id: uuid.UUID) -> list[PayrollFile]:
    return list(
        session.scalars(
            select(PayrollFile).where(PayrollFile.run_id == run_id).order_by(PayrollFile.name)
        )
    )


def write_files(session: Session, run: PayrollRun, reports_dir: Path) -> list[PayrollFile]:
    """The run's payout files (once: a re-run returns the files already recorded)."""
    run = get_run(session, run.id, for_update=True)  # a reversal waits, or goes first
    existing = files_of(session, run.id)
    if existing:
        return existing
    if run.status not in MONEY_MOVED:
        raise Conflict(
            f"payroll run {run.id} is {run.status}: files are written for posted runs",
            code="payroll_not_posted",
        )
    tenant_profile = profile(session)
    debtor = payout_files.Debtor(
        name=tenant_profile.debtor_name,
        iban=tenant_profile.debtor_iban,
        bic=tenant_profile.debtor_bic,
    )
    lines = session.scalars(
        select(PayrollLine)
        .where(
            PayrollLine.run_id == run.id,
            PayrollLine.status.in_([LineStatus.POSTED, LineStatus.PAID]),
        )
        .order_by(PayrollLine.id)
    ).all()
    payments = [_payment(run, line) for line in lines]
    sepa = [p for p in payments if _by_sepa(p)]
    other = [p for p in payments if not _by_sepa(p)]
    stem = f"payroll-{run.period}-a{run.attempt}"
    made: list[payout_files.PayoutFile] = []
    if sepa:
        made.append(
            payout_files.sepa_credit_transfer(
                debtor,
                sepa,
                message_id=message_id(run, "SEPA"),
                execution_date=run.payout_date,
                name=f"{stem}-sepa.pain.001.001.03.xml",
            )
        )
    if other:
        made.append(
            payout_files.iso20022_credit_transfer(
                debtor,
                other,
                message_id=message_id(run, "XCT"),
                execution_date=run.payout_date,
                name=f"{stem}.pain.001.001.09.xml",
            )
        )
    if payments:
        made.append(payout_files.summary_csv(payments, name=f"{stem}-summary.csv", files=made))
    directory = run_directory(run)
    (reports_dir / directory).mkdir(parents=True, exist_ok=True)
    records = []
    for made_file in made:
        relative = directory / made_file.name
        (reports_dir / relative).write_bytes(made_file.content)
        record = PayrollFile(
            id=uuid.uuid4(),
            tenant_id=run.tenant_id,
            run_id=run.id,
            name=made_file.name,
            format=made_file.format,
            media_type=made_file.media_type,
            path=str(relative),
            sha256=made_file.sha256,
            size_bytes=len(made_file.content),
            message_id=made_file.message_id,
            currencies=made_file.currencies,
            line_count=made_file.line_count,
            status=FileStatus.VALID,
            created_at=utcnow(),
        )
        session.add(record)
        records.append(record)
    session.flush()
    return records


def _by_sepa(payment: payout_files.Payment) -> bool:
    """Euros to an IBAN in the SEPA zone go by SEPA credit transfer; everything else by .09."""
    return (
        payment.currency == "EUR"
        and payment.scheme == PayoutScheme.IBAN
        and payment.country in SEPA_COUNTRIES
    )


def _payment(run: PayrollRun, line: PayrollLine) -> payout_files.Payment:
    payee = line.payee or {}
    return payout_files.Payment(
        end_to_end_id=line.end_to_end_id or "",
        creditor_name=payee.get("creditor_name") or "",
        scheme=payee.get("scheme") or "",
        iban=payee.get("iban"),
        bic=payee.get("bic"),
        account_number=payee.get("account_number"),
        bank_code=payee.get("bank_code"),
        country=payee.get("country") or "",
        amount_minor=int(line.payout_minor or 0),
        currency=line.payout_currency,
        remittance=f"Quire payout {run.period}",
    )


def read_file(
    session: Session, run_id: uuid.UUID, name: str, reports_dir: Path
) -> tuple[PayrollFile, bytes]:
    """A recorded file's bytes, proven unchanged by its digest (a tampered file is refused)."""
    found = session.scalar(
        select(PayrollFile).where(PayrollFile.run_id == run_id, PayrollFile.name == name)
    )
    if found is None:
        raise NotFound(f"run {run_id} has no file {name!r}", code="payroll_file_not_found")
    path = (reports_dir / found.path).resolve()
    if reports_dir.resolve() not in path.parents or not path.is_file():
        raise NotFound(
            f"file {name!r} is missing from the reports directory", code="payroll_file_missing"
        )
    content = path.read_bytes()
    if hashlib.sha256(content).hexdigest() != found.sha256:
        raise Conflict(
            f"file {name!r} no longer matches its recorded sha256", code="payroll_file_tampered"
        )
    return found, content


def void_files(session: Session, run_id: uuid.UUID) -> int:
    """Mark a reversed run's files void: the bank must not execute them."""
    voided = 0
    for found in files_of(session, run_id):
        if found.status != FileStatus.VOID:
            found.status = FileStatus.VOID
            voided += 1
    return voided
