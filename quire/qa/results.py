"""What a check says about a submission, and what all of them say together.

A `CheckResult` is a frozen pydantic model so that Prefect can persist it as JSON (task results,
cache) and the report can render it without knowing which check produced it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from quire.qa.config import Check

# A reviewer reads findings in the report; beyond this many, the rest are only counted.
MAX_FINDINGS = 20


class CheckResult(BaseModel):
    """One automated check's outcome.

    `summary` is one sentence for a reviewer; `findings` are the individual points behind it
    (a banned term, a grammar issue); `details` carries the numbers for machines (JSON values).
    A skipped check (not configured, nothing to compare) counts as passed: it cannot block work.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    check: Check
    passed: bool
    summary: str = Field(min_length=1)
    details: dict[str, Any] = Field(default_factory=dict)
    findings: tuple[str, ...] = ()
    skipped: bool = False

    @model_validator(mode="after")
    def _skipped_passes(self) -> CheckResult:
        if self.skipped and not self.passed:
            raise ValueError("a skipped check cannot fail")
        return self

    @classmethod
    def skip(cls, check: Check, reason: str, **details: Any) -> CheckResult:
        """The check did not run (not configured, nothing to compare against): say why."""
        return cls(check=check, passed=True, skipped=True, summary=reason, details=details)

    @property
    def status(self) -> str:
        """`passed`, `failed` or `skipped`: the word the report shows."""
        if self.skipped:
            return "skipped"
        return "passed" if self.passed else "failed"


def capped(findings: Iterable[str], limit: int = MAX_FINDINGS) -> tuple[str, ...]:
    """At most `limit` findings, with a closing line that says how many were left out."""
    items = list(findings)
    if len(items) <= limit:
        return tuple(items)
    return (*items[:limit], f"... and {len(items) - limit} more")


# Checks that inform but never send work back: lateness is charged as a fine instead.
NON_BLOCKING: frozenset[Check] = frozenset({Check.LATENESS})


def blocking_failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    """The failed checks that send the work back for rework."""
    return [r for r in results if not r.passed and r.check not in NON_BLOCKING]


class Verdict(BaseModel):
    """All automated checks taken together: did every one pass, and which did not."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    failed: tuple[Check, ...] = ()
    blocking: tuple[Check, ...] = ()  # the failed checks that send the work back
    skipped: tuple[Check, ...] = ()
    ran: tuple[Check, ...] = ()

    @classmethod
    def of(cls, results: Iterable[CheckResult]) -> Verdict:
        results = list(results)
        seen = [result.check for result in results]
        duplicated = {check for check in seen if seen.count(check) > 1}
        if duplicated:
            raise ValueError(f"more than one result for: {', '.join(sorted(duplicated))}")
        failed = tuple(r.check for r in results if not r.passed)
        return cls(
            passed=not failed,
            failed=failed,
            blocking=tuple(r.check for r in blocking_failures(results)),
            skipped=tuple(r.check for r in results if r.skipped),
            ran=tuple(r.check for r in results if not r.skipped),
        )

    @property
    def summary(self) -> str:
        if not self.ran:
            return "no automated check ran" + (
                f" ({len(self.skipped)} skipped: {', '.join(self.skipped)})" if self.skipped else ""
            )
        if self.passed:
            done = f"all {len(self.ran)} automated checks passed"
            if self.skipped:
                done += f" ({len(self.skipped)} skipped: {', '.join(self.skipped)})"
            return done
        return f"{len(self.failed)} of {len(self.ran)} automated checks failed: " + ", ".join(
            self.failed
        )
