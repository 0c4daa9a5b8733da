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

Two more rules look at what the payout rules cannot explain:

- **a return after settlement**: a returned payment naming a payout line an earlier statement
  already settled (the line is paid) matches it as a RETURN too, when it gives back exactly what
  was paid: the money comes back into the bank, the line is reversed and payable again.
- **money in** (`CLIENT_REFERENCE`): a client's credit (not a return) whose reference — the
  remittance, the customer reference, the end-to-end id or the raw reference, in that order —
  names an order ("ORDER <uuid>", "order:<uuid>", the bare uuid) or an invoice ("INVOICE
  <uuid>", "INV-<uuid>", the bare uuid) with something outstanding on the client receivable.
  Credits are taken in statement order against what is outstanding (what the order or invoice
  put on the receivable, less what earlier credits already paid), by a running sum per
  reference: a credit within it settles that much (partly or exactly), one beyond it — or in
  another currency, or naming what the tenant's receivables do not know — is an exception
  saying which.

Everything else on the bank side is an exception for finance's queue. Nothing here touches the
database: `propose` returns what to do and `quire.reconciliation.runs` does it, with the frames
it reads (`runs.bank_frame`, `payout_frame`, `settled_frame`, `receivable_frame`).
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
    "remittance",
    "customer_reference",
    "raw_reference",
]
# Where a client's credit may name what it pays, in the order they are believed.
REFERENCE_FIELDS = ("remittance", "customer_reference", "end_to_end_id", "raw_reference")
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
# Payout lines an earlier statement settled (paid), for a return after settlement.
SETTLED_COLUMNS = ["payroll_line_id", "run_id", "end_to_end_id", "currency", "payout_minor"]
# What a client owes on each order or invoice a credit names, one row per reference.
RECEIVABLE_COLUMNS = [
    "reference",  # "order:<uuid>" | "invoice:<uuid>": the BankMatch.reference of its receipts
    "kind",  # "order" | "invoice"
    "target_id",  # the uuid, canonical (lower case, hyphenated)
    "currency",  # of the receivable
    "client_id",  # the receivable account's owner (None: the tenant's clients at large)
    "owed_minor",  # what it put on the receivable
    "received_minor",  # what live matches already received for it
    "refusal",  # why no credit may settle it (a void invoice...), or None
]

# An order or invoice named in free text: an optional word saying which, then a uuid (banks
# and clients drop the hyphens, change the case, add a colon or a dash).
_NAMED = re.compile(
    r"(?:\b(?P<hint>order|invoice|inv)\b[\s:#/.-]{0,3})?"
    r"(?<![0-9a-f])(?P<uuid>[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12})"
    r"(?![0-9a-f])",
    re.IGNORECASE,
)
_HINTS = {"order": "order", "invoice": "invoice", "inv": "invoice"}


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
    reference: str | None = None  # money in: the order or invoice it pays ("order:<uuid>")
    after_settlement: bool = False  # a return of a payout an earlier statement settled


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


def propose(
    bank: pd.DataFrame,
    payouts: pd.DataFrame,
    settings: MatchSettings,
    *,
    settled: pd.DataFrame | None = None,
    receivables: pd.DataFrame | None = None,
) -> Proposal:
    """Run the rules over the frames (columns BANK_COLUMNS, PAYOUT_COLUMNS, SETTLED_COLUMNS and
    RECEIVABLE_COLUMNS; a bank frame without the reference columns has none). The bank frame is
    in statement order: money in is taken in that order."""
    bank = bank.reindex(columns=BANK_COLUMNS).copy()
    payouts = payouts[PAYOUT_COLUMNS].copy()
    proposal = Proposal()
    bank, payouts = _returns(bank, payouts, proposal)
    if settled is not None:
        bank = _returns_after_settlement(bank, settled[SETTLED_COLUMNS], proposal)
    bank, payouts = _by_end_to_end(bank, payouts, proposal)
    bank, payouts = _by_amount_date_name(bank, payouts, proposal, settings)
    bank, payouts = _by_file_total(bank, payouts, proposal, settings)
    if receivables is not None:
        bank = _by_client_reference(bank, receivables[RECEIVABLE_COLUMNS], proposal)
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


def _one_line_matches(
    pairs: pd.DataFrame, rule: MatchRule, *, after_settlement: bool = False
) -> list[Match]:
    """A match per (bank line, payout line) pair of `pairs`, with its payout file if known."""
    files = pairs["file_id"] if "file_id" in pairs else [None] * len(pairs)
    return [
        Match(int(bank_line), rule, (int(line),), int(amount), file_id, None, after_settlement)
        for bank_line, line, amount, file_id in zip(
            pairs["bank_line_id"],
            pairs["payroll_line_id"],
            pairs["amount_minor"],
            files,
            strict=True,
        )
    ]


def _returns_after_settlement(
    bank: pd.DataFrame, settled: pd.DataFrame, proposal: Proposal
) -> pd.DataFrame:
    """A returned payment naming a line an earlier statement settled: a RETURN of that line if
    the bank gives back exactly what it paid (then the money re-enters the bank at the amount
    the settlement took out); another amount or currency is an exception."""
    returned = bank[bank["returned"] & bank["end_to_end_id"].notna()]
    hits = returned.merge(settled, on="end_to_end_id", suffixes=("", "_line"))
    if hits.empty:
        return bank
    hits = hits.drop_duplicates("bank_line_id").drop_duplicates("payroll_line_id")
    exact = hits[
        (hits["currency"] == hits["currency_line"]) & (hits["amount_minor"] == hits["payout_minor"])
    ]
    proposal.matches.extend(_one_line_matches(exact, MatchRule.RETURN, after_settlement=True))
    differing = hits[~hits["bank_line_id"].isin(exact["bank_line_id"])]
    proposal.unmatched.extend(
        Unmatched(
            int(row.bank_line_id),
            f"a return of payroll line {row.payroll_line_id} (end-to-end id "
            f"{row.end_to_end_id}), paid already, but the bank gave back {int(row.amount_minor)} "
            f"{row.currency} for the {int(row.payout_minor)} {row.currency_line} it paid",
        )
        for row in differing.itertuples()
    )
    return bank[~bank["bank_line_id"].isin(hits["bank_line_id"])]


def _by_end_to_end(
    bank: pd.DataFrame, payouts: pd.DataFrame, proposal: Proposal
) -> tuple[pd.DataFrame, pd.DataFrame]:
    debits = bank[(bank["amount_minor"] < 0) & bank["end_to_end_id"].notna()]
    hits = debits.merge(payouts, on="end_to_end_id", suffixes=("", "_line"))
    exact = hits[
        (hits["currency"] == hits["currency_line"])
        & (-hits["amount_minor"] == hits["payout_minor"])
    ]
    proposal.matches.extend(_one_line_matches(exact, MatchRule.END_TO_END))
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
    proposal.matches.extend(_one_line_matches(best, MatchRule.AMOUNT_DATE_NAME))
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


def named_references(bank: pd.DataFrame) -> pd.DataFrame:
    """Every order or invoice the bank lines' reference fields name: one row per mention, with
    `rank` (lower is believed first: field by field, then left to right), `hint` ("order",
    "invoice" or None when only the uuid is there) and `target_id` (the canonical uuid)."""
    found = []
    by_line = bank.set_index("bank_line_id")
    for field_rank, column in enumerate(REFERENCE_FIELDS):
        if column not in by_line or by_line.empty:
            continue
        texts = by_line[column].where(by_line[column].notna(), "").astype(str)
        mentions = texts.str.extractall(_NAMED)
        if mentions.empty:
            continue
        mentions = mentions.reset_index()
        mentions["rank"] = field_rank * 1_000 + mentions["match"]
        found.append(mentions[["bank_line_id", "rank", "hint", "uuid"]])
    if not found:
        return pd.DataFrame(columns=["bank_line_id", "rank", "hint", "target_id"])
    named = pd.concat(found, ignore_index=True)
    digits = named["uuid"].str.replace("-", "", regex=False).str.lower()
    named["target_id"] = (
        digits.str[0:8]
        + "-"
        + digits.str[8:12]
        + "-"
        + digits.str[12:16]
        + "-"
        + digits.str[16:20]
        + "-"
        + digits.str[20:32]
    )
    hints = named["hint"].str.lower().map(_HINTS).astype(object)
    named["hint"] = hints.where(hints.notna(), None)  # None: only the uuid is there
    named["bank_line_id"] = named["bank_line_id"].astype("int64")
    return named[["bank_line_id", "rank", "hint", "target_id"]]


def _by_client_reference(
    bank: pd.DataFrame, receivables: pd.DataFrame, proposal: Proposal
) -> pd.DataFrame:
    """Money in: each client credit naming an order or invoice settles what is outstanding on
    it, credits taken in statement order (a running sum per reference); every credit that names
    something is explained here, by a match or by an exception that says why not."""
    credits = bank[(bank["amount_minor"] > 0) & ~bank["returned"]].assign(
        position=lambda f: range(len(f))
    )
    named = named_references(credits)
    if named.empty:
        return bank
    pairs = named.merge(receivables, on="target_id")
    pairs = pairs[pairs["hint"].isna() | (pairs["hint"] == pairs["kind"])]
    chosen = pairs.sort_values(["bank_line_id", "rank"]).drop_duplicates("bank_line_id")
    unknown = (
        named[~named["bank_line_id"].isin(chosen["bank_line_id"])]
        .sort_values(["bank_line_id", "rank"])
        .drop_duplicates("bank_line_id")
    )
    proposal.unmatched.extend(
        Unmatched(
            int(row.bank_line_id),
            f"a credit naming {row.hint if isinstance(row.hint, str) else 'order or invoice'} "
            f"{row.target_id}, which this tenant's client receivables do not know (an unknown "
            "order or invoice, another tenant's, or an order not accepted yet)",
        )
        for row in unknown.itertuples()
    )
    chosen = chosen.merge(
        credits[["bank_line_id", "amount_minor", "currency", "position"]],
        on="bank_line_id",
        suffixes=("_owed", ""),
    )
    refused = chosen["refusal"].notna()
    other_currency = ~refused & (chosen["currency"] != chosen["currency_owed"])
    proposal.unmatched.extend(
        Unmatched(int(row.bank_line_id), f"a credit naming {row.reference}: {row.refusal}")
        for row in chosen[refused].itertuples()
    )
    proposal.unmatched.extend(
        Unmatched(
            int(row.bank_line_id),
            f"a credit of {int(row.amount_minor)} {row.currency} naming {row.reference}, "
            f"which is receivable in {row.currency_owed}",
        )
        for row in chosen[other_currency].itertuples()
    )
    _take_in_order(chosen[~refused & ~other_currency], proposal)
    return bank[~bank["bank_line_id"].isin(named["bank_line_id"])]


def _take_in_order(credits: pd.DataFrame, proposal: Proposal) -> None:
    """Credits naming receivables they may settle, in statement order: a credit is matched
    while the running sum of its reference's credits stays within what is outstanding; from the
    first that goes beyond it, the reference's later credits are exceptions too."""
    credits = credits.sort_values("position").assign(
        outstanding=lambda f: (
            f["owed_minor"].astype("int64") - f["received_minor"].fillna(0).astype("int64")
        )
    )
    credits = credits.assign(
        taken=credits.groupby("reference")["amount_minor"].cumsum(),
    )
    fits = credits["taken"] <= credits["outstanding"]
    proposal.matches.extend(
        Match(
            int(row.bank_line_id),
            MatchRule.CLIENT_REFERENCE,
            (),
            int(row.amount_minor),
            reference=row.reference,
        )
        for row in credits[fits].itertuples()
    )
    proposal.unmatched.extend(
        Unmatched(
            int(row.bank_line_id),
            f"a credit of {int(row.amount_minor)} {row.currency} is more than {row.reference} "
            f"still owes ({max(int(row.outstanding) - int(row.taken - row.amount_minor), 0)} "
            f"{row.currency} of {int(row.owed_minor)}): an overpayment",
        )
        for row in credits[~fits].itertuples()
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
    return "a credit no rule matched (money in naming no order or invoice)"


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
