"""The matching rules, on frames: each rule matches what it should and nothing else, in
priority order, each bank line and each payout line at most once."""

from __future__ import annotations

import datetime as dt
import uuid

import pandas as pd
import pytest

from quire.reconciliation.matching import (
    BANK_COLUMNS,
    PAYOUT_COLUMNS,
    RECEIVABLE_COLUMNS,
    SETTLED_COLUMNS,
    MatchSettings,
    name_similarity,
    named_references,
    propose,
)
from quire.reconciliation.models import MatchRule

PAYOUT_DATE = dt.date(2026, 12, 3)
SEPA_FILE, XCT_FILE = uuid.uuid4(), uuid.uuid4()
RUN = uuid.uuid4()


def bank(*rows: dict) -> pd.DataFrame:
    base = {
        "currency": "EUR",
        "value_date": PAYOUT_DATE,
        "end_to_end_id": None,
        "counterparty_name": None,
        "returned": False,
    }
    return pd.DataFrame([{**base, **row} for row in rows], columns=BANK_COLUMNS)


def payouts(*rows: dict) -> pd.DataFrame:
    base = {"run_id": RUN, "file_id": SEPA_FILE, "currency": "EUR", "payout_date": PAYOUT_DATE}
    return pd.DataFrame([{**base, **row} for row in rows], columns=PAYOUT_COLUMNS)


ANA = {
    "payroll_line_id": 1,
    "end_to_end_id": "E2E-1",
    "payout_minor": 120_000,
    "creditor_name": "Ana Lima",
}
BEN = {
    "payroll_line_id": 2,
    "end_to_end_id": "E2E-2",
    "payout_minor": 45_050,
    "creditor_name": "Ben Okafor",
}
YUKI = {
    "payroll_line_id": 3,
    "end_to_end_id": "E2E-3",
    "payout_minor": 9_800,
    "creditor_name": "Yuki Sato",
    "currency": "JPY",
    "file_id": XCT_FILE,
}


def rules(proposal) -> dict[int, tuple[MatchRule, tuple[int, ...]]]:
    return {m.bank_line_id: (m.rule, m.payroll_line_ids) for m in proposal.matches}


def test_the_end_to_end_id_matches_an_exact_debit():
    proposal = propose(
        bank({"bank_line_id": 10, "amount_minor": -120_000, "end_to_end_id": "E2E-1"}),
        payouts(ANA, BEN),
        MatchSettings(),
    )
    assert rules(proposal) == {10: (MatchRule.END_TO_END, (1,))}
    assert proposal.unmatched == []


def test_a_known_end_to_end_id_with_another_amount_is_an_exception_not_a_match():
    proposal = propose(
        bank({"bank_line_id": 10, "amount_minor": -119_000, "end_to_end_id": "E2E-1"}),
        payouts(ANA),
        MatchSettings(),
    )
    assert proposal.matches == []
    [exception] = proposal.unmatched
    assert "E2E-1" in exception.reason
    assert "moved 119000 EUR for its 120000 EUR" in exception.reason


def test_amount_date_and_a_similar_name_match_when_the_bank_dropped_the_id():
    proposal = propose(
        bank(
            {"bank_line_id": 11, "amount_minor": -45_050, "counterparty_name": "OKAFOR BEN"},
            {"bank_line_id": 12, "amount_minor": -120_000, "counterparty_name": "Someone Else"},
        ),
        payouts(ANA, BEN),
        MatchSettings(),
    )
    assert rules(proposal) == {11: (MatchRule.AMOUNT_DATE_NAME, (2,))}
    assert [u.bank_line_id for u in proposal.unmatched] == [12]  # right amount, wrong name


def test_outside_the_value_date_window_nothing_matches_by_amount():
    late = PAYOUT_DATE + dt.timedelta(days=6)
    proposal = propose(
        bank(
            {
                "bank_line_id": 11,
                "amount_minor": -45_050,
                "counterparty_name": "Ben Okafor",
                "value_date": late,
            }
        ),
        payouts(BEN),
        MatchSettings(window_days=5),
    )
    assert proposal.matches == []


def test_two_equal_payouts_each_take_one_debit_by_the_better_name():
    twin = {**BEN, "payroll_line_id": 4, "end_to_end_id": "E2E-4", "creditor_name": "Bea Okoro"}
    proposal = propose(
        bank(
            {"bank_line_id": 21, "amount_minor": -45_050, "counterparty_name": "Bea Okoro"},
            {"bank_line_id": 22, "amount_minor": -45_050, "counterparty_name": "Ben Okafor"},
        ),
        payouts(BEN, twin),
        MatchSettings(),
    )
    assert rules(proposal) == {
        21: (MatchRule.AMOUNT_DATE_NAME, (4,)),
        22: (MatchRule.AMOUNT_DATE_NAME, (2,)),
    }


def test_one_debit_for_a_whole_payout_file_matches_all_its_lines():
    proposal = propose(
        bank({"bank_line_id": 30, "amount_minor": -(120_000 + 45_050)}),
        payouts(ANA, BEN, YUKI),
        MatchSettings(),
    )
    assert rules(proposal) == {30: (MatchRule.FILE_TOTAL, (1, 2))}
    assert proposal.matches[0].payroll_file_id == SEPA_FILE


def test_a_returned_payment_matches_its_line_with_the_original_debit():
    proposal = propose(
        bank(
            {"bank_line_id": 40, "amount_minor": -120_000, "end_to_end_id": "E2E-1"},
            {
                "bank_line_id": 41,
                "amount_minor": 120_000,
                "end_to_end_id": "E2E-1",
                "returned": True,
            },
            {"bank_line_id": 42, "amount_minor": -45_050, "end_to_end_id": "E2E-2"},
        ),
        payouts(ANA, BEN),
        MatchSettings(),
    )
    assert rules(proposal) == {
        40: (MatchRule.RETURN, (1,)),
        41: (MatchRule.RETURN, (1,)),
        42: (MatchRule.END_TO_END, (2,)),
    }


def test_a_line_is_matched_once_even_if_two_rules_could_take_it():
    proposal = propose(
        bank(
            {"bank_line_id": 50, "amount_minor": -120_000, "end_to_end_id": "E2E-1"},
            {"bank_line_id": 51, "amount_minor": -120_000, "counterparty_name": "Ana Lima"},
        ),
        payouts(ANA),
        MatchSettings(),
    )
    assert rules(proposal) == {50: (MatchRule.END_TO_END, (1,))}
    assert [u.bank_line_id for u in proposal.unmatched] == [51]


def test_credits_without_a_rule_are_exceptions():
    proposal = propose(
        bank({"bank_line_id": 60, "amount_minor": 5_000}), payouts(ANA), MatchSettings()
    )
    assert "credit" in proposal.unmatched[0].reason


def test_a_return_of_a_line_already_paid_matches_it_after_settlement():
    settled = pd.DataFrame(
        [
            {
                "payroll_line_id": 1,
                "run_id": RUN,
                "end_to_end_id": "E2E-1",
                "currency": "EUR",
                "payout_minor": 120_000,
            }
        ],
        columns=SETTLED_COLUMNS,
    )
    returned = {"end_to_end_id": "E2E-1", "returned": True}
    proposal = propose(
        bank(
            {"bank_line_id": 70, "amount_minor": 120_000, **returned},
            {"bank_line_id": 71, "amount_minor": 119_000, **returned},  # a second, short one
        ),
        payouts(BEN),
        MatchSettings(),
        settled=settled,
    )
    assert rules(proposal) == {70: (MatchRule.RETURN, (1,))}
    assert proposal.matches[0].after_settlement
    assert [u.bank_line_id for u in proposal.unmatched] == [71]


# Fixed ids: they appear in test ids, which must be the same in every collection (xdist).
ORDER = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
INVOICE = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")


def receivables(*rows: dict) -> pd.DataFrame:
    base = {"currency": "EUR", "client_id": None, "received_minor": 0, "refusal": None}
    return pd.DataFrame(
        [{**base, "reference": f"{row['kind']}:{row['target_id']}", **row} for row in rows],
        columns=RECEIVABLE_COLUMNS,
    )


OWED = receivables(
    {"kind": "order", "target_id": str(ORDER), "owed_minor": 50_000, "received_minor": 10_000},
    {"kind": "invoice", "target_id": str(INVOICE), "owed_minor": 7_000},
)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        (f"ORDER {ORDER}", "order"),
        (f"order:{ORDER}", "order"),
        (f"payment {ORDER.hex.upper()} thanks", None),
        (f"INV-{ORDER}", "invoice"),
        (f"Invoice #{ORDER}", "invoice"),
    ],
)
def test_references_name_orders_and_invoices_however_written(text, hint):
    found = named_references(bank({"bank_line_id": 1, "amount_minor": 1, "remittance": text}))
    assert list(found["target_id"]) == [str(ORDER)]
    assert list(found["hint"]) == [hint]


def test_credits_naming_an_order_settle_what_it_still_owes_in_statement_order():
    says = {"remittance": f"ORDER {ORDER}"}
    proposal = propose(
        bank(
            {"bank_line_id": 80, "amount_minor": 30_000, **says},
            {"bank_line_id": 81, "amount_minor": 10_000, **says},  # exactly the rest
            {"bank_line_id": 82, "amount_minor": 1, **says},  # nothing is left
            {"bank_line_id": 83, "amount_minor": 7_000, "customer_reference": str(INVOICE)},
        ),
        payouts(ANA),
        MatchSettings(),
        receivables=OWED,
    )
    assert {m.bank_line_id: (m.rule, m.reference) for m in proposal.matches} == {
        80: (MatchRule.CLIENT_REFERENCE, f"order:{ORDER}"),
        81: (MatchRule.CLIENT_REFERENCE, f"order:{ORDER}"),
        83: (MatchRule.CLIENT_REFERENCE, f"invoice:{INVOICE}"),
    }
    (over,) = proposal.unmatched
    assert (over.bank_line_id, "overpayment" in over.reason) == (82, True)


def test_a_credit_is_not_money_in_when_it_cannot_settle_what_it_names():
    refused = receivables(
        {
            "kind": "invoice",
            "target_id": str(INVOICE),
            "owed_minor": 7_000,
            "refusal": "the invoice is void",
        },
    )
    proposal = propose(
        bank(
            {"bank_line_id": 90, "amount_minor": 1_000, "remittance": f"ORDER {uuid.uuid4()}"},
            {"bank_line_id": 91, "amount_minor": 1_000, "remittance": f"INVOICE {ORDER}"},
            {"bank_line_id": 92, "amount_minor": 1_000, "remittance": f"invoice {INVOICE}"},
            {"bank_line_id": 93, "amount_minor": -1_000, "remittance": f"ORDER {ORDER}"},
        ),
        payouts(),
        MatchSettings(),
        receivables=pd.concat([OWED.iloc[:1], refused]),
    )
    assert proposal.matches == []
    reasons = {u.bank_line_id: u.reason for u in proposal.unmatched}
    assert "do not know" in reasons[90]
    assert "do not know" in reasons[91]  # an order's id, said to be an invoice
    assert reasons[92].endswith("the invoice is void")
    assert reasons[93].startswith("a debit")  # money out is never a client's payment


def test_a_credit_in_another_currency_than_the_receivable_is_not_taken():
    proposal = propose(
        bank(
            {
                "bank_line_id": 95,
                "amount_minor": 1_000,
                "currency": "USD",
                "remittance": f"ORDER {ORDER}",
            },
        ),
        payouts(),
        MatchSettings(),
        receivables=OWED,
    )
    assert proposal.matches == []
    assert "receivable in EUR" in proposal.unmatched[0].reason


@pytest.mark.parametrize(
    ("a", "b", "alike"),
    [
        ("Ana Lima", "LIMA ANA", True),
        ("José Álvarez", "JOSE ALVAREZ", True),
        ("Ben Okafor", "B. OKAFOR", True),
        ("Ana Lima", "Acme GmbH", False),
        (None, "Ana", False),
    ],
)
def test_names_are_compared_without_case_accents_punctuation_or_order(a, b, alike):
    assert (name_similarity(a, b) >= MatchSettings().name_threshold) is alike
