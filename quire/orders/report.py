"""The marketplace's statistics for people: one log line, and markdown for a Prefect artifact."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def statistics_line(stats: Mapping[str, Any]) -> str:
    """One log line: non-zero order counts overall, then the outbox backlog."""
    counts = " ".join(f"{status}={n}" for status, n in stats["orders"].items() if n) or "none"
    outbox_ = stats["outbox"]
    age = outbox_["oldest_unrelayed_age_seconds"]
    oldest = "" if age is None else f" (oldest {age:.0f}s)"
    return f"orders: {counts}; outbox: {outbox_['unrelayed']} unrelayed{oldest}"


def statistics_markdown(stats: Mapping[str, Any]) -> str:
    """A markdown table per tenant and status (for a Prefect markdown artifact)."""
    statuses = [status for status, n in stats["orders"].items() if n] or ["open"]
    header = "| tenant | " + " | ".join(statuses) + " |"
    rule = "|---" * (len(statuses) + 1) + "|"
    rows = [
        f"| {slug} | " + " | ".join(str(counts.get(s, 0)) for s in statuses) + " |"
        for slug, counts in stats["orders_by_tenant"].items()
    ]
    total = "| **all** | " + " | ".join(str(stats["orders"][s]) for s in statuses) + " |"
    backlog = stats["outbox"]
    age = backlog["oldest_unrelayed_age_seconds"]
    return "\n".join(
        [
            f"## Marketplace at {stats['generated_at']}",
            "",
            header,
            rule,
            *rows,
            total,
            "",
            f"Outbox: **{backlog['unrelayed']}** events waiting for the relay"
            + ("" if age is None else f", the oldest for {age:.0f} s"),
            "",
        ]
    )
