"""What people see of a run: the preview table, the markdown summary, the gate's failures."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from quire.money import format_minor
from quire.payroll.models import LineStatus, PayrollRun

# A table artifact is for looking at, not a data export: past this many lines the preview shows
# the first ones and says where the rest are (the API and the CSV summary have every line).
PREVIEW_ROWS = 500


def preview_rows(frame: pd.DataFrame, names: dict[str, str]) -> list[dict[str, Any]]:
    """Per line: who, payable, rate, payout, and why it is withheld, formatted for people."""
    shown = frame.head(PREVIEW_ROWS)
    rows = []
    for line in shown.astype(object).where(shown.notna(), None).to_dict("records"):
        payout = line["payout_minor"]
        rows.append(
            {
                "specialist": names.get(line["specialist_id"], line["specialist_id"]),
                "payable": format_minor(int(line["payable_minor"]), line["source_currency"]),
                "rate": line["fx_rate"]
                if line["source_currency"] != line["payout_currency"]
                else "",
                "payout": format_minor(int(payout), line["payout_currency"]) if payout else "",
                "status": line["status"],
                "withheld because": line["hold_reason"] or "",
            }
        )
    return rows


def summary_markdown(run: PayrollRun, frame: pd.DataFrame, *, api_link: str | None = None) -> str:
    """Totals per currency, counts, withheld and why: what an approver reads before deciding."""
    totals = run.totals or {}
    lines = [
        f"# Payroll {run.period} (attempt {run.attempt}){' — dry run' if run.dry_run else ''}",
        "",
        f"Cutoff **{run.cutoff_at:%Y-%m-%d %H:%M} UTC**, payout date **{run.payout_date}**, "
        f"status **{run.status}**.",
        "",
        "| payout currency | total | lines | specialists |",
        "|---|---:|---:|---:|",
    ]
    for currency, total in sorted(totals.get("payout", {}).items()):
        lines.append(
            f"| {currency} | {format_minor(total['amount_minor'], currency)} | {total['lines']} "
            f"| {total['specialists']} |"
        )
    withheld = frame[frame["status"] == LineStatus.WITHHELD]
    if len(withheld):
        lines += ["", f"**Withheld: {len(withheld)} line(s)**, payable again next period:", ""]
        lines += ["| source currency | amount | lines |", "|---|---:|---:|"]
        for currency, total in sorted(totals.get("withheld", {}).items()):
            lines.append(
                f"| {currency} | {format_minor(total['amount_minor'], currency)} "
                f"| {total['lines']} |"
            )
        reasons = Counter(_reason_kind(r) for r in withheld["hold_reason"].fillna(""))
        lines += ["", "| why | lines |", "|---|---:|"]
        lines += [f"| {reason} | {count} |" for reason, count in reasons.most_common()]
    if run.fx_rates:
        rates = run.fx_rates
        lines += [
            "",
            f"FX: {rates.get('provider')} rates of {rates.get('rate_date')} (EUR base), "
            "converted half-even per line.",
        ]
    if len(frame) > PREVIEW_ROWS:
        lines += ["", f"The preview table shows the first {PREVIEW_ROWS} of {len(frame)} lines."]
    if api_link:
        lines += ["", f"Every line: {api_link}"]
    return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """Group reasons for the summary ('on hold: <text>' counts as 'on hold')."""
    return reason.split(":")[0] if reason else "unknown"


def gate_failure_markdown(run: PayrollRun, gate: dict[str, Any]) -> str:
    """Each failed expectation with its offending rows; nothing was posted."""
    lines = [
        f"# Payroll {run.period} (attempt {run.attempt}): the gate failed, nothing was posted",
        "",
        f"Suite `{gate.get('suite')}`: {len(gate.get('failed', []))} of "
        f"{gate.get('evaluated')} expectation(s) failed.",
    ]
    if gate.get("data_docs_index"):
        lines += ["", f"Great Expectations Data Docs: `{gate['data_docs_index']}`"]
    for failed in gate.get("failed", []):
        lines += ["", f"## {failed['name']}", "", failed.get("description", "")]
        offending = failed.get("offending") or []
        if offending:
            columns = list(offending[0].keys())
            lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            for row in offending:
                lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
            if failed.get("count", len(offending)) > len(offending):
                lines.append(f"\n…and {failed['count'] - len(offending)} more row(s).")
    return "\n".join(lines)
