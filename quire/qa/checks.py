"""The automated checks that need nothing but the text, the order's QA config and the clock.

Each takes plain values and returns a `CheckResult`; none touches the database or the network.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from quire.qa.config import Check, QAConfig
from quire.qa.results import CheckResult, capped

# A word is a run of letters/digits, with inner apostrophes or hyphens kept in one word, so
# "don't" and "well-known" count once, as a reader (and a word processor) would count them.
WORD = re.compile(r"\w+(?:['\u2019\-]\w+)*")


def word_count(content: str) -> int:
    return sum(1 for _ in WORD.finditer(content))


def _bounds(qa: QAConfig) -> str:
    if qa.min_words is not None and qa.max_words is not None:
        return f"{qa.min_words:,}-{qa.max_words:,} words"
    if qa.min_words is not None:
        return f"at least {qa.min_words:,} words"
    return f"at most {qa.max_words:,} words"


def check_length(content: str, qa: QAConfig) -> CheckResult:
    """Word count against the brief's bounds; without bounds it passes and reports the count."""
    words = word_count(content)
    details = {"words": words, "min_words": qa.min_words, "max_words": qa.max_words}
    if qa.min_words is None and qa.max_words is None:
        summary = f"{words:,} words (the brief sets no length)"
        return CheckResult(check=Check.LENGTH, passed=True, summary=summary, details=details)
    if qa.min_words is not None and words < qa.min_words:
        summary = f"Too short: {words:,} words, the brief asks for {_bounds(qa)}"
        return CheckResult(check=Check.LENGTH, passed=False, summary=summary, details=details)
    if qa.max_words is not None and words > qa.max_words:
        summary = f"Too long: {words:,} words, the brief asks for {_bounds(qa)}"
        return CheckResult(check=Check.LENGTH, passed=False, summary=summary, details=details)
    summary = f"{words:,} words, within the brief's {_bounds(qa)}"
    return CheckResult(check=Check.LENGTH, passed=True, summary=summary, details=details)


@lru_cache(maxsize=1024)
def term_pattern(term: str) -> re.Pattern[str]:
    """A case-insensitive, whole-word pattern for a term or phrase.

    Words of a phrase may be separated by any whitespace (a line break included). The edges are
    "not a word character" rather than `\\b`, so terms that start or end with punctuation
    ("C++", ".NET") still match as whole terms and "art" never matches inside "start".
    """
    words = term.split()
    if not words:
        raise ValueError("a term needs at least one non-blank character")
    body = r"\s+".join(re.escape(word) for word in words)
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def _unique_terms(terms: list[str]) -> list[str]:
    """Terms as configured, without blank ones and without case-insensitive repeats."""
    seen: set[str] = set()
    unique: list[str] = []
    for term in terms:
        key = " ".join(term.split()).casefold()
        if key and key not in seen:
            seen.add(key)
            unique.append(" ".join(term.split()))
    return unique


def check_terms(content: str, qa: QAConfig) -> CheckResult:
    """Banned terms that appear and required terms that do not (case-insensitive, whole words)."""
    banned = {
        term: count
        for term in _unique_terms(qa.banned_terms)
        if (count := len(term_pattern(term).findall(content)))
    }
    missing = [
        term for term in _unique_terms(qa.required_terms) if not term_pattern(term).search(content)
    ]
    details = {
        "banned_found": banned,
        "required_missing": missing,
        "banned_checked": len(_unique_terms(qa.banned_terms)),
        "required_checked": len(_unique_terms(qa.required_terms)),
    }
    if not qa.banned_terms and not qa.required_terms:
        return CheckResult(
            check=Check.TERMS,
            passed=True,
            summary="The brief names no required or banned terms",
            details=details,
        )
    findings = [f'Banned term "{term}" appears {_times(n)}' for term, n in banned.items()]
    findings += [f'Required term "{term}" is missing' for term in missing]
    problems = []
    if banned:
        problems.append(f"{len(banned)} banned term{_s(len(banned))} used")
    if missing:
        problems.append(f"{len(missing)} required term{_s(len(missing))} missing")
    summary = (
        "; ".join(problems).capitalize()
        if problems
        else "All required terms present, no banned terms used"
    )
    return CheckResult(
        check=Check.TERMS,
        passed=not problems,
        summary=summary,
        details=details,
        findings=capped(findings),
    )


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _require_aware(**values: dt.datetime) -> None:
    for name, value in values.items():
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")


def describe_duration(delta: dt.timedelta) -> str:
    """A span as a reviewer would say it: "2 days 3 hours", "45 minutes", "12 seconds"."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{n} {unit}{_s(n)}"
        for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))
        if n
    ]
    if not parts:
        return f"{seconds} second{_s(seconds)}" if seconds else "under a second"
    return " ".join(parts[:2])


def check_lateness(submitted_at: dt.datetime, deadline: dt.datetime) -> CheckResult:
    """On time or late, and by how long. Whether lateness costs money is the fine policy's call."""
    _require_aware(submitted_at=submitted_at, deadline=deadline)
    late_by = submitted_at - deadline
    details = {
        "submitted_at": submitted_at.astimezone(dt.UTC).isoformat(),
        "deadline": deadline.astimezone(dt.UTC).isoformat(),
        "late_seconds": max(0, int(late_by.total_seconds())),
    }
    if late_by <= dt.timedelta(0):
        margin = "at the deadline" if not late_by else f"{describe_duration(-late_by)} early"
        summary = f"On time ({margin})"
        return CheckResult(check=Check.LATENESS, passed=True, summary=summary, details=details)
    summary = f"Late by {describe_duration(late_by)}"
    return CheckResult(check=Check.LATENESS, passed=False, summary=summary, details=details)
