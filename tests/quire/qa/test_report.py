"""The QA report (markdown for a Prefect artifact) and the verdict it leads with."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from pydantic import ValidationError

from quire.money import format_minor
from quire.qa.config import Check
from quire.qa.fines import LateFine
from quire.qa.report import ReviewEntry, escape, render_report
from quire.qa.results import CheckResult, Verdict, blocking_failures, capped

ORDER_ID = uuid.UUID("0b8f6f5e-3c1d-4e59-9d0c-1d2b3c4d5e6f")
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def passed(check: Check, summary: str = "fine") -> CheckResult:
    return CheckResult(check=check, passed=True, summary=summary)


def failed(check: Check, summary: str, *findings: str) -> CheckResult:
    return CheckResult(check=check, passed=False, summary=summary, findings=findings)


def report(results: list[CheckResult], **kw: object) -> str:
    return render_report(
        order_title="Ledgers 101",
        order_id=ORDER_ID,
        submission_number=2,
        content_hash=HASH,
        results=results,
        **kw,  # type: ignore[arg-type]
    )


# --- verdict -------------------------------------------------------------------------------------


def test_the_verdict_passes_only_when_no_check_failed():
    results = [
        passed(Check.LENGTH),
        CheckResult.skip(Check.EXTERNAL, "not configured"),
        failed(Check.TERMS, "1 banned term used"),
    ]
    verdict = Verdict.of(results)
    assert not verdict.passed
    assert verdict.failed == (Check.TERMS,)
    assert verdict.skipped == (Check.EXTERNAL,)
    assert verdict.summary == "1 of 2 automated checks failed: terms"
    assert Verdict.of(results[:2]).passed
    assert Verdict.of(results[:2]).summary == "all 1 automated checks passed (1 skipped: external)"


def test_one_result_per_check():
    with pytest.raises(ValueError, match="more than one result for: length"):
        Verdict.of([passed(Check.LENGTH), passed(Check.LENGTH)])


def test_a_skipped_check_cannot_fail():
    with pytest.raises(ValidationError, match="skipped check cannot fail"):
        CheckResult(check=Check.EXTERNAL, passed=False, skipped=True, summary="?")


def test_long_lists_of_findings_are_capped_with_a_count():
    assert capped(["a", "b", "c"], limit=2) == ("a", "b", "... and 1 more")
    assert capped(["a", "b"], limit=2) == ("a", "b")


# --- report --------------------------------------------------------------------------------------


def test_the_report_names_the_submission_and_tabulates_every_check_in_a_fixed_order():
    text = report(
        [
            failed(Check.TERMS, "1 banned term used", 'Banned term "synergy" appears once'),
            passed(Check.LENGTH, "812 words, within the brief's 800-1,200 words"),
            CheckResult.skip(Check.EXTERNAL, "Grammar check skipped: no service configured"),
        ]
    )
    assert text.startswith("# QA report: Ledgers 101\n")
    assert f"| Order | `{ORDER_ID}` |" in text
    assert "| Submission | #2 |" in text
    assert f"`{HASH}`" in text
    assert "**Automated checks failed**: 1 of 2 automated checks failed: terms." in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "|---" not in line]
    assert rows[-3:] == [
        "| Length | ✅ passed | 812 words, within the brief's 800-1,200 words |",
        "| Required and banned terms | ❌ failed | 1 banned term used |",
        "| Grammar (external service) | ⏭️ skipped | Grammar check skipped: no service configured |",
    ]
    findings = '## Findings\n\n### Required and banned terms\n\n- Banned term "synergy" appears'
    assert findings in text
    assert "_No review decisions yet._" in text


def test_text_from_submissions_cannot_break_the_table_or_inject_markup():
    text = report([failed(Check.TERMS, "a | b\nc *bold* <script>", "`x` [link](y)")])
    assert "| a \\| b c \\*bold\\* \\<script\\> |" in text
    assert "- \\`x\\` \\[link\\](y)" in text
    assert escape("# heading") == "\\# heading"


def test_reviews_so_far_are_listed_by_stage():
    decided = dt.datetime(2030, 5, 2, 9, 30, tzinfo=dt.UTC)
    text = report(
        [passed(Check.LENGTH)],
        reviews=[
            ReviewEntry(stage=2, reviewer="bea", decision="request rework", comments="Tighten."),
            ReviewEntry(stage=1, reviewer="al", decision="approve", decided_at=decided),
        ],
    )
    assert "| Stage | Reviewer | Decision | When | Comments |" in text
    assert text.index("| 1 | al | approve | 2030-05-02 09:30 UTC |  |") < text.index(
        "| 2 | bea | request rework |  | Tighten. |"
    )


def test_a_late_fine_is_shown_in_the_currencys_own_units():
    fine = LateFine(amount_minor=1_250, currency="USD", days_late=2, percent=10)
    assert "**Late fine on acceptance**: USD 12.50 (2 started days late, 10% of the fee)." in (
        report([passed(Check.LATENESS)], late_fine=fine)
    )
    on_time = LateFine(amount_minor=0, currency="USD", days_late=0, percent=0)
    assert "**Late fine**: none." in report([passed(Check.LATENESS)], late_fine=on_time)
    assert format_minor(1_500, "JPY") == "JPY 1,500"
    assert format_minor(1_234_567, "BHD") == "BHD 1,234.567"


def test_an_order_without_automated_checks_says_so():
    text = report([])
    assert "_No automated checks were configured for this order._" in text


def test_late_but_otherwise_clean_work_reads_as_passed_with_a_fine() -> None:
    results = [passed(Check.LENGTH), failed(Check.LATENESS, "Submitted 2 hours late")]
    assert blocking_failures(results) == []
    assert Verdict.of(results).blocking == ()
    markdown = render_report(
        order_title="Essay",
        order_id=ORDER_ID,
        submission_number=1,
        content_hash=HASH,
        results=results,
    )
    assert "**Automated checks passed, with a late fine**" in markdown
