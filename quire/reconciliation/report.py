"""What people see of a reconciliation: the markdown summary, the exceptions table, the alert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quire.money import format_minor
from quire.reconciliation.models import Reconciliation, ReconciliationException

# A table artifact is for looking at: past this many rows it says where the rest are.
EXCEPTION_ROWS = 500


def summary_markdown(run: Reconciliation, *, statement: str | None, api_link: str) -> str:
    """Matched, settled, returned, exceptions, the suites' outcome and where the Data Docs are."""
    summary = run.summary or {}
    suites = run.suites or {}
    lines = [
        f"# Reconciliation {run.period or ''}: {run.status}",
        "",
        f"Statement **{statement or '-'}**; API: `{api_link}`.",
        "",
        "| | count |",
        "|---|---:|",
        f"| bank lines | {summary.get('bank_lines', 0)} |",
        f"| matched | {summary.get('matched', 0)} |",
        f"| payouts settled | {summary.get('settled', 0)} |",
        f"| payments returned | {summary.get('returned', 0)} |",
        f"| exceptions raised | {summary.get('exceptions_raised', 0)} |",
        f"| exceptions open | {summary.get('exceptions_open', 0)} |",
        "",
        "Matched by rule: "
        + (
            ", ".join(f"{rule} {n}" for rule, n in sorted(summary.get("by_rule", {}).items()))
            or "-"
        ),
        "",
    ]
    if suites:
        verdict = "all passed" if suites.get("success") else "FAILED"
        lines += [f"**Ledger invariants ({suites.get('suite', '')}): {verdict}**", ""]
        for failed in suites.get("failed", []):
            lines.append(f"- {failed}")
        if suites.get("data_docs_index"):
            lines += ["", f"Data Docs: `{suites['data_docs_index']}`"]
    return "\n".join(lines)


def exception_rows(exceptions: Sequence[ReconciliationException]) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "side": e.side,
            "amount": format_minor(e.amount_minor, e.currency),
            "status": e.status,
            "why": e.reason,
        }
        for e in exceptions[:EXCEPTION_ROWS]
    ]


def alert_text(tenant: str, period: str, reason: str, link: str) -> tuple[str, str]:
    """The mail finance gets when a reconciliation failed or left exceptions."""
    subject = f"[Quire] {tenant}: reconciliation {period} needs finance"
    body = "\n".join(
        [
            f"The reconciliation of {period} for {tenant} needs a look:",
            "",
            f"  {reason}",
            "",
            f"Open it: {link}",
            "",
            "(Sent by Quire's notify-finance automation on quire.reconciliation.failed.)",
        ]
    )
    return subject, body
