"""The QA report of one submission, as markdown for a Prefect artifact (and anyone else).

It reads top to bottom like a reviewer's checklist: which submission, the automated verdict, one
table row per check, the findings behind failures, the late fine, then the reviews given so far.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from quire.money import format_minor
from quire.qa.config import Check
from quire.qa.fines import LateFine
from quire.qa.results import CheckResult, Verdict

LABELS = {
    Check.LENGTH: "Length",
    Check.TERMS: "Required and banned terms",
    Check.DUPLICATE: "Near-duplicate",
    Check.LATENESS: "Lateness",
    Check.EXTERNAL: "Grammar (external service)",
}
ICONS = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭️ skipped"}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


class ReviewEntry(BaseModel):
    """A human review decision as the report shows it (the flow maps its own type onto this)."""

    model_config = ConfigDict(frozen=True)

    stage: int
    reviewer: str
    decision: str
    comments: str = ""
    decided_at: dt.datetime | None = None


def escape(text: str) -> str:
    """Plain text made safe for a markdown table cell: one line, no accidental formatting."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _header(
    order_title: str, order_id: uuid.UUID, submission_number: int, content_hash: str
) -> list[str]:
    return [
        f"# QA report: {escape(order_title)}",
        "",
        "| | |",
        "|---|---|",
        f"| Order | `{order_id}` |",
        f"| Submission | #{submission_number} |",
        f"| Content SHA-256 | `{escape(content_hash)}` |",
        "",
    ]


def _checks(results: Sequence[CheckResult]) -> list[str]:
    verdict = Verdict.of(results)
    if verdict.passed:
        word = "passed"
    elif verdict.blocking:
        word = "failed"
    else:
        word = "passed, with a late fine"
    lines = [f"**Automated checks {word}**: {escape(verdict.summary)}.", ""]
    if not results:
        return [*lines, "_No automated checks were configured for this order._", ""]
    lines += ["| Check | Result | Summary |", "|---|---|---|"]
    lines += [f"| {LABELS[r.check]} | {ICONS[r.status]} | {escape(r.summary)} |" for r in results]
    return [*lines, ""]


def _findings(results: Sequence[CheckResult]) -> list[str]:
    with_findings = [r for r in results if r.findings]
    if not with_findings:
        return []
    lines = ["## Findings", ""]
    for result in with_findings:
        lines += [f"### {LABELS[result.check]}", ""]
        lines += [f"- {escape(finding)}" for finding in result.findings]
        lines.append("")
    return lines


def _fine(fine: LateFine | None) -> list[str]:
    if fine is None:
        return []
    if not fine.applies:
        return ["**Late fine**: none.", ""]
    days = f"{fine.days_late} started day{'' if fine.days_late == 1 else 's'} late"
    amount = format_minor(fine.amount_minor, fine.currency)
    return [f"**Late fine on acceptance**: {amount} ({days}, {fine.percent}% of the fee).", ""]


def _reviews(reviews: Sequence[ReviewEntry]) -> list[str]:
    lines = ["## Reviews", ""]
    if not reviews:
        return [*lines, "_No review decisions yet._", ""]
    lines += ["| Stage | Reviewer | Decision | When | Comments |", "|---|---|---|---|---|"]
    for review in sorted(reviews, key=lambda r: r.stage):
        when = ""
        if review.decided_at is not None:
            when = review.decided_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(
            f"| {review.stage} | {escape(review.reviewer)} | {escape(review.decision)} "
            f"| {when} | {escape(review.comments)} |"
        )
    return [*lines, ""]


def render_report(
    *,
    order_title: str,
    order_id: uuid.UUID,
    submission_number: int,
    content_hash: str,
    results: Sequence[CheckResult],
    reviews: Sequence[ReviewEntry] = (),
    late_fine: LateFine | None = None,
) -> str:
    """The markdown report; checks appear in the order the `Check` enum lists them."""
    order = list(Check)
    ordered = sorted(results, key=lambda r: order.index(r.check))
    lines = [
        *_header(order_title, order_id, submission_number, content_hash),
        *_checks(ordered),
        *_findings(ordered),
        *_fine(late_fine),
        *_reviews(reviews),
    ]
    return "\n".join(lines).rstrip() + "\n"
