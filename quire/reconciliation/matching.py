"""Matching the bank's lines with the payouts Quire sent, rule by rule, set-based.

Two frames go in — the statement's unmatched bank lines, the tenant's posted payout lines not
yet confirmed — and the rules run in priority order, each a join (pandas merges), each taking
what it matched out of both frames before the next one looks:

1. **end-to-end id**: the id payroll wrote for a line in its payout file, echoed by the bank. A
   debit with a known id but another amount or currency is not matched: it is an exception.
   A *returned* payment (camt return information, MT940 return codes) carrying a line's id
   matches that line as a return, with the original debit of the same id if the statement has
   it (the two net to zero on the bank): the line is reversed and payable again.
2. **amount + currency + value date + name**: a debit of exactly a line's payout, in its
   currency, valued within `window_days` of its run's payout date, to a counterparty whose name
   is similar enough to the payee's (`name_threshold`, on normalised names); the best pair wins,
   each bank line and each payout line once.
3. **one-to-many**: a debit equal to the sum of one payout file's lines in its currency (the
   bank booked the whole batch as one amount), valued within the window.

Everything else on the bank side is an exception for finance's queue. Nothing here touches the
database: `propose` returns what to do and `quire.reconciliation.service` does it.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from quire.reconciliation.models import MatchRule

BANK_COLUMNS = [
    "bank_line_id",
    "amount_minor",
    "currency",
    "value_date",
    "end_to_end_id",
    "counterparty_name",
    "returned",
]
PAYOUT_COLUMNS = [
    "payroll_line_id",
    "run_id",
    "file_id",  # the payout file the line was written to (its batch for rule 3)
    "end_to_end_id",
    "currency",
    "payout_minor",
    "payout_date",
    "creditor_name",
]


@dataclass(frozen=True)
class MatchSettings:
    window_days: int = 5
    name_threshold: float = 0.6


@dataclass(frozen=True)
class Match:
    """One bank line explained: by which rule, by which payout lines, for how much."""

    bank_line_id: int
    rule: MatchRule
    payroll_line_ids: tuple[int, ...]
    amount_minor: int  # what the bank line moved (signed, as on the statement)
    payroll_file_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Unmatched:
    bank_line_id: int
    reason: str


@dataclass
class Proposal:
    matches: list[Match] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)

    def by_rule(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for match in self.matches:
            counts[match.rule.value] = counts.get(match.rule.value, 0) + 1
        return counts


def propose(bank: pd.DataFrame, payouts: pd.DataFrame, settings: MatchSettings) -> Proposal:
    """Run the rules over the two frames (columns BANK_COLUMNS and PAYOUT_COLUMNS)."""
    bank = bank[BANK_COLUMNS].copy()
    payouts = payouts[PAYOUT_COLUMNS].copy()
    proposal = Proposal()
    bank, payouts = _returns(bank, payouts, proposal)
    bank, payouts = _by_end_to_end(bank, payouts, proposal)
    bank, payouts = _by_amount_date_name(bank, payouts, proposal, settings)
    bank, payouts = _by_file_total(bank, payouts, proposal, settings)
    proposal.unmatched.extend(
        Unmatched(int(row.bank_line_id), _why_unmatched(row)) for row in bank.itertuples()
    )
    return proposal


def _returns(
    bank: pd.DataFrame, payouts: pd.DataFrame, proposal: Proposal
) -> tuple[pd.DataFrame, pd.DataFrame]:
    returned = bank[bank["returned"] & bank["end_to_end_id"].notna()]
    hits = returned.merge(payouts, on="end_to_end_id", suffixes=("", "_line"))
    hits = hits[hits["currency"] == hits["currency_line"]]
    if hits.empty:
        return bank, payouts
    # The original debit of a returned payment, if this statement has it, goes with it.
    originals = bank[~bank["returned"] & bank["end_to_end_id"].isin(hits["end_to_end_id"])]
    original_of = dict(zip(originals["end_to_end_id"], originals["bank_line_id"], strict=True))
    for row in hits.itertuples():
        line = (int(row.payroll_line_id),)
        proposal.matches.append(
            Match(int(row.bank_line_id), MatchRule.RETURN, line, int(row.amount_minor))
        )
        original = original_of.get(row.end_to_end_id)
        if original is not None:
            amount = int(bank.loc[bank["bank_line_id"] == original, "amount_minor"].iloc[0])
            proposal.matches.append(Match(int(original), MatchRule.RETURN, line, amount))
    taken = set(hits["bank_line_id"]) | set(originals["bank_line_id"])
    return (
        bank[~bank["bank_line_id"].isin(taken)],
        payouts[~payouts["payroll_line_id"].isin(hits["payroll_line_id"])],
    )


def _by_end_to_end(
    bank: pd.DataFrame, payouts: pd.DataFrame, proposal: Proposal
) -> tuple[pd.DataFrame, pd.DataFrame]:
    debits = bank[(bank["amount_minor"] < 0) & bank["end_to_end_id"].notna()]
    hits = debits.merge(payouts, on="end_to_end_id", suffixes=("", "_line"))
    exact = hits[
        (hits["currency"] == hits["currency_line"])
        & (-hits["amount_minor"] == hits["payout_minor"])
    ]
    proposal.matches.extend(
        Match(
            int(row.bank_line_id),
            MatchRule.END_TO_END,
            (int(row.payroll_line_id),),
            int(row.amount_minor),
            row.file_id,
        )
        for row in exact.itertuples()
    )
    differing = hits[~hits["bank_line_id"].isin(exact["bank_line_id"])]
    proposal.unmatched.extend(
        Unmatched(
            int(row.bank_line_id),
            f"end-to-end id {row.end_to_end_id} is payroll line {row.payroll_line_id}, but the "
            f"bank moved {-int(row.amount_minor)} {row.currency} for its "
            f"{int(row.payout_minor)} {row.currency_line}",
        )
        for row in differing.itertuples()
    )
    taken = set(hits["bank_line_id"])
    return (
        bank[~bank["bank_line_id"].isin(taken)],
        payouts[~payouts["payroll_line_id"].isin(exact["payroll_line_id"])],
    )


def _by_amount_date_name(
    bank: pd.DataFrame, payouts: pd.DataFrame, proposal: Proposal, settings: MatchSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    debits = bank[bank["amount_minor"] < 0].assign(payout_minor=lambda f: -f["amount_minor"])
    pairs = debits.merge(payouts, on=["currency", "payout_minor"], suffixes=("", "_line"))
    pairs = pairs[_within(pairs["value_date"], pairs["payout_date"], settings.window_days)]
    if pairs.empty:
        return bank, payouts
    pairs = pairs.assign(
        score=[
            name_similarity(a, b)
            for a, b in zip(pairs["counterparty_name"], pairs["creditor_name"], strict=True)
        ]
    )
    pairs = pairs[pairs["score"] >= settings.name_threshold]
    best = (
        pairs.sort_values(["score", "bank_line_id"], ascending=[False, True])
        .drop_duplicates("bank_line_id")
        .drop_duplicates("payroll_line_id")
    )
    proposal.matches.extend(
        Match(
            int(row.bank_line_id),
            MatchRule.AMOUNT_DATE_NAME,
            (int(row.payroll_line_id),),
            int(row.amount_minor),
            row.file_id,
        )
        for row in best.itertuples()
    )
    return (
        bank[~bank["bank_line_id"].isin(best["bank_line_id"])],
        payouts[~payouts["payroll_line_id"].isin(best["payroll_line_id"])],
    )


def _by_file_total(
    bank: pd.DataFrame, payouts: pd.DataFrame, proposal: Proposal, settings: MatchSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    with_file = payouts[payouts["file_id"].notna()]
    if with_file.empty:
        return bank, payouts
    batches = with_file.groupby(["file_id", "currency"], as_index=False).agg(
        payout_minor=("payout_minor", "sum"),
        payout_date=("payout_date", "max"),
        lines=("payroll_line_id", "size"),
    )
    batches = batches[batches["lines"] > 1]  # one line is rule 1 or 2's
    debits = bank[bank["amount_minor"] < 0].assign(payout_minor=lambda f: -f["amount_minor"])
    pairs = debits.merge(batches, on=["currency", "payout_minor"])
    pairs = pairs[_within(pairs["value_date"], pairs["payout_date"], settings.window_days)]
    pairs = pairs.drop_duplicates("bank_line_id").drop_duplicates(["file_id", "currency"])
    matched_lines: set[int] = set()
    for row in pairs.itertuples():
        members = with_file[
            (with_file["file_id"] == row.file_id) & (with_file["currency"] == row.currency)
        ]["payroll_line_id"]
        ids = tuple(int(i) for i in members)
        matched_lines.update(ids)
        proposal.matches.append(
            Match(
                int(row.bank_line_id), MatchRule.FILE_TOTAL, ids, int(row.amount_minor), row.file_id
            )
        )
    return (
        bank[~bank["bank_line_id"].isin(pairs["bank_line_id"])],
        payouts[~payouts["payroll_line_id"].isin(matched_lines)],
    )


def _within(value_dates: pd.Series, payout_dates: pd.Series, days: int) -> pd.Series:
    gap = pd.to_datetime(value_dates) - pd.to_datetime(payout_dates)
    return gap.abs() <= pd.Timedelta(days=days)


def _why_unmatched(row: Any) -> str:
    amount = int(row.amount_minor)
    if row.returned:
        return "a returned payment whose end-to-end id names no payout waiting for the bank"
    if amount < 0:
        return "a debit no payout explains (no end-to-end id, amount, date or batch matched)"
    return "a credit no rule matched (money in without a known reference)"


def name_similarity(a: object, b: object) -> float:
    """0..1: how alike two party names are, ignoring case, accents, punctuation and word order
    (banks truncate, reorder and transliterate names)."""
    left, right = _normal(a), _normal(b)
    if not left or not right:
        return 0.0
    return difflib.SequenceMatcher(None, left, right).ratio()


def _normal(name: object) -> str:
    if not isinstance(name, str):
        return ""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_name.lower())
    return " ".join(sorted(words))
