"""Reversing many transfers in one batch: the same mirror images `reverse` posts one at a time,
idempotent, and refusing what `reverse` refuses."""

from __future__ import annotations

import pytest

from ledger import chart
from ledger.balances import trial_balance
from ledger.models import AccountKind
from ledger.posting import Leg, TransferSpec, post, reverse, reverse_many
from quire.errors import Conflict


def transfers(session, count: int):
    receivable = chart.account(session, AccountKind.CLIENT_RECEIVABLE, "EUR")
    revenue = chart.account(session, AccountKind.PLATFORM_REVENUE, "EUR")
    return [
        post(
            session,
            TransferSpec(
                "manual", f"t{i}", [Leg.debit(receivable, 100 + i), Leg.credit(revenue, 100 + i)]
            ),
        )
        for i in range(count)
    ]


def test_many_reversals_in_one_batch_cancel_every_transfer(database, tenant):
    with database.session(tenant, write=True) as session:
        made = transfers(session, 5)
        reversals = reverse_many(session, [t.id for t in made], reason="wrong client")
        assert [r.reverses_id for r in reversals] == [t.id for t in made]
        assert all(v == 0 for v in trial_balance(session).values())
        revenue = chart.account(session, AccountKind.PLATFORM_REVENUE, "EUR")
        assert revenue.balance == 0


def test_asking_again_answers_with_the_same_reversals_and_mixes_with_reverse(database, tenant):
    with database.session(tenant, write=True) as session:
        made = transfers(session, 3)
        first = reverse(session, made[0].id, reason="dup")
        again = reverse_many(session, [t.id for t in made], reason="dup")
        assert again[0].id == first.id
        assert [r.id for r in reverse_many(session, [t.id for t in made], reason="dup")] == [
            r.id for r in again
        ]


def test_another_reason_or_a_reversal_of_a_reversal_is_refused(database, tenant):
    with database.session(tenant, write=True) as session:
        made = transfers(session, 2)
        reversals = reverse_many(session, [t.id for t in made], reason="one")
    with pytest.raises(Conflict), database.session(tenant, write=True) as session:
        reverse_many(session, [made[0].id], reason="another")
    with pytest.raises(Conflict), database.session(tenant, write=True) as session:
        reverse_many(session, [reversals[0].id])
