"""Property: whatever sequence of postings, payouts, fines, batches, reversals, FX conversions
(JPY, USD and BHD: exponents 0, 2 and 3) and replays is thrown at the ledger, its invariants hold.

The test keeps its own model of every account's balance, computed independently from the
business rules (fee and FX rounding included), and predicts which operations must be refused
(a specialist payable may never go negative). After every operation the stored balances must
equal the model's; after every example the stored rows are audited (each transfer balanced per
currency with >= 2 entries, trial balance zero per currency, maintained balance = sum of entries,
no forbidden negative, one transfer per key). Each example runs in a fresh tenant of a shared
database, once on SQLite and once on PostgreSQL (where every commit also passes the deferred
balance check).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import business, chart, fx
from ledger.models import Account, Transfer
from ledger.posting import (
    IdempotencyConflict,
    InsufficientFunds,
    Leg,
    TransferSpec,
    post_batch,
    reverse,
)
from quire.db import Database
from quire.errors import Conflict, Invalid
from tests.ledger.support import EXPONENTS, K, audit, count_rows, new_tenant

CURRENCIES = sorted(EXPONENTS)  # BHD (3), JPY (0), USD (2)
SPECIALISTS = [uuid.UUID(int=1), uuid.UUID(int=2)]
PAYABLE = str(K.SPECIALIST_PAYABLE)
# accounts a manual journal entry may touch: (kind, specialist index or None)
MANUAL = [
    (K.CLIENT_RECEIVABLE, None),
    (K.BANK, None),
    (K.PLATFORM_REVENUE, None),
    (K.PAYOUT_CLEARING, None),
    (K.FINES_INCOME, None),
    (K.SPECIALIST_PAYABLE, 0),
    (K.SPECIALIST_PAYABLE, 1),
]

Key = tuple[str, uuid.UUID | None, str]  # (kind, owner, currency)


def key(kind: K, currency: str, specialist: int | None = None) -> Key:
    return (str(kind), None if specialist is None else SPECIALISTS[specialist], currency)


def tie_rate(source: str, target: str) -> Decimal:
    """1.5 target minor units per source minor unit: every odd amount lands on a tie (.5)."""
    return Decimal("1.5").scaleb(EXPONENTS[source] - EXPONENTS[target])


def half_even(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


def fee_of(gross: int, fee_bps: int) -> int:
    return half_even(Decimal(gross) * fee_bps / 10_000)


def in_target(amount: int, source: str, target: str, rate: Decimal) -> int:
    with localcontext() as ctx:
        ctx.prec = 60
        shift = Decimal(10) ** (EXPONENTS[target] - EXPONENTS[source])
        return half_even(Decimal(amount) * rate * shift)


# --- operations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Earn:
    specialist: int
    currency: str
    gross: int
    fee_bps: int


@dataclass(frozen=True)
class Fine:
    specialist: int
    currency: str
    amount: int
    percent: int | None = None  # if set: that share of what is owed, decided when it runs


@dataclass(frozen=True)
class Payout:
    specialist: int
    currency: str
    amount: int
    settle: bool
    percent: int | None = None


@dataclass(frozen=True)
class Convert:
    specialist: int
    pair: tuple[str, str]
    amounts: tuple[int, ...]  # with `percent`: weights splitting that share of what is owed
    rate: Decimal | None  # None: `tie_rate` of the pair
    percent: int | None = None


@dataclass(frozen=True)
class Manual:
    """A batch of journal entries; each is a list of (debit, credit, currency, amount) pairs."""

    transfers: tuple[tuple[tuple[int, int, str, int], ...], ...]


@dataclass(frozen=True)
class Reverse:
    pick: int


@dataclass(frozen=True)
class Replay:
    pick: int


@dataclass(frozen=True)
class ReplayChanged:
    pick: int


specialist = st.integers(0, len(SPECIALISTS) - 1)
currency = st.sampled_from(CURRENCIES)
amount = st.integers(1, 60_000)
rate = st.one_of(
    st.none(),  # see tie_rate
    st.sampled_from(
        [Decimal("151.2345"), Decimal("0.0104"), Decimal("0.005"), Decimal("397.5"), Decimal("2.5")]
    ),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4),
)
pair = st.sampled_from([(a, b) for a in CURRENCIES for b in CURRENCIES if a != b])
percent = st.one_of(st.none(), st.integers(1, 100), st.integers(1, 120))
journal_line = st.tuples(
    st.integers(0, len(MANUAL) - 1), st.integers(0, len(MANUAL) - 1), currency, amount
)
operation = st.one_of(
    st.builds(
        Earn, specialist, currency, st.integers(100, 50_000), st.sampled_from([0, 1500, 3000])
    ),
    st.builds(Earn, specialist, currency, st.integers(100, 50_000), st.integers(0, 3000)),
    st.builds(Fine, specialist, currency, amount, percent),
    st.builds(Payout, specialist, currency, amount, st.booleans(), percent),
    st.builds(
        Convert,
        specialist,
        pair,
        st.lists(st.integers(1, 20_000), min_size=1, max_size=4).map(tuple),
        rate,
        percent,
    ),
    st.builds(  # mostly a share of what is owed, often at a rate where odd amounts tie
        Convert,
        specialist,
        pair,
        st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
        st.one_of(st.none(), rate),
        st.integers(1, 110),
    ),
    st.builds(
        Manual,
        st.lists(
            st.lists(journal_line, min_size=1, max_size=2).map(tuple), min_size=1, max_size=3
        ).map(tuple),
    ),
    st.builds(Reverse, st.integers(0, 1_000)),
    st.builds(Replay, st.integers(0, 1_000)),
    st.builds(ReplayChanged, st.integers(0, 1_000)),
)


# --- the model and the runner -----------------------------------------------------------------


@dataclass
class Plan:
    """What an operation does (`work`, in one unit of work, returning its transfers' ids) and
    what the model expects it to post (net legs per transfer), or the refusal it expects."""

    work: Callable[[Session], list[uuid.UUID]]
    transfers: list[dict[Key, int]]
    refusal: type[Exception] | None = None


@dataclass
class Done:
    op: Any
    number: int
    transfer_ids: list[uuid.UUID]


def net(*lines: tuple[Key, int]) -> dict[Key, int]:
    legs: dict[Key, int] = defaultdict(int)
    for k, amount in lines:
        legs[k] += amount
    return dict(legs)


@dataclass
class Run:
    database: Database
    tenant: uuid.UUID
    balances: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    legs: dict[uuid.UUID, dict[Key, int]] = field(default_factory=dict)  # net legs per transfer
    order: list[uuid.UUID] = field(default_factory=list)
    reversal_of: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # reversal -> original
    reversed_by: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # original -> reversal
    done: list[Done] = field(default_factory=list)

    # --- the model ---

    def overdrawn(self, transfers: list[dict[Key, int]]) -> bool:
        """Would the batch's net effect push a specialist payable below zero (credit side)?"""
        total = net(*((k, v) for legs in transfers for k, v in legs.items()))
        return any(k[0] == PAYABLE and self.balances[k] + v > 0 for k, v in total.items())

    def book(self, op: Any, number: int, ids: list[uuid.UUID], transfers: list) -> None:
        for transfer_id, legs in zip(ids, transfers, strict=True):
            assert transfer_id not in self.legs
            self.legs[transfer_id] = legs
            self.order.append(transfer_id)
            for k, v in legs.items():
                self.balances[k] += v
        self.done.append(Done(op, number, ids))
        event(f"posted: {type(op).__name__}")

    # --- the database ---

    def unit(self, work: Callable[[Session], list[uuid.UUID]]) -> list[uuid.UUID]:
        with self.database.session(self.tenant, write=True) as s:
            return work(s)

    def stored(self) -> dict[Key, int]:
        with self.database.session(self.tenant) as s:
            rows = s.execute(
                select(Account.kind, Account.owner_id, Account.currency, Account.balance)
            )
            return {(kind, owner, cur): bal for kind, owner, cur, bal in rows if bal}

    def refused(self, work: Callable[[Session], Any], error: type[Exception]) -> Exception:
        """`work` is refused with `error`, and nothing at all is written."""
        before = count_rows(self.database, self.tenant)
        with pytest.raises(error) as refusal:
            self.unit(work)
        assert count_rows(self.database, self.tenant) == before
        event(f"refused: {type(refusal.value).__name__}")
        return refusal.value

    # --- running operations ---

    def execute(self, op: Any, number: int) -> None:
        if isinstance(op, Reverse):
            self.reverse(op, number)
        elif isinstance(op, Replay):
            self.replay(op)
        elif isinstance(op, ReplayChanged):
            earned = [d for d in self.done if isinstance(d.op, Earn)]
            if earned:
                done = earned[op.pick % len(earned)]
                changed = plan_earn(done.op, done.number, gross_delta=1)
                self.refused(changed.work, IdempotencyConflict)
        else:
            op = self.concrete(op)
            plan = PLANS[type(op)](op, number)
            if plan.refusal is not None:
                self.refused(plan.work, plan.refusal)
            elif self.overdrawn(plan.transfers):
                self.refused(plan.work, InsufficientFunds)
            else:
                self.book(op, number, self.unit(plan.work), plan.transfers)
        assert self.stored() == {k: v for k, v in self.balances.items() if v}, op

    def concrete(self, op: Any) -> Any:
        """The operation with its amounts and rate decided (what a replay repeats)."""
        if isinstance(op, Fine | Payout | Convert) and op.percent is not None:
            op = self.aim(op)
        if isinstance(op, Convert) and op.rate is None:
            op = replace(op, rate=tie_rate(*op.pair))
        return op

    def aim(self, op: Fine | Payout | Convert) -> Any:
        """Aim at a payable that holds money, and take `percent` of what it holds."""
        source = op.pair[0] if isinstance(op, Convert) else op.currency
        owed = sorted((k for k, v in self.balances.items() if k[0] == PAYABLE and v < 0), key=str)
        if owed:
            _, owner, source = owed[(op.specialist * 3 + CURRENCIES.index(source)) % len(owed)]
            op = replace(op, specialist=SPECIALISTS.index(owner))
        share = -self.balances[key(K.SPECIALIST_PAYABLE, source, op.specialist)] * op.percent // 100
        if isinstance(op, Convert):
            target = op.pair[1] if op.pair[1] != source else op.pair[0]
            weights = sum(op.amounts)
            amounts = tuple(max(1, share * w // weights) for w in op.amounts)
            return replace(op, pair=(source, target), amounts=amounts, percent=None)
        return replace(op, currency=source, amount=max(1, share), percent=None)

    def reverse(self, op: Reverse, number: int) -> None:
        if not self.order:
            return
        original = self.order[op.pick % len(self.order)]

        def work(s: Session) -> list[uuid.UUID]:
            return [reverse(s, original).id]

        if original in self.reversal_of:
            assert self.refused(work, Conflict).code == "reversal_of_reversal"
        elif original in self.reversed_by:  # reversed already: the same reversal, nothing new
            before = count_rows(self.database, self.tenant)
            assert self.unit(work) == [self.reversed_by[original]]
            assert count_rows(self.database, self.tenant) == before
        else:
            mirror = {k: -v for k, v in self.legs[original].items()}
            if self.overdrawn([mirror]):
                self.refused(work, InsufficientFunds)
                return
            ids = self.unit(work)
            self.book(op, number, ids, [mirror])
            self.reversal_of[ids[0]] = original
            self.reversed_by[original] = ids[0]

    def replay(self, op: Replay) -> None:
        """Replaying a successful operation returns the same transfers and changes nothing (even
        if the balances of today would refuse it: nothing is posted again)."""
        if not self.done:
            return
        done = self.done[op.pick % len(self.done)]
        before = count_rows(self.database, self.tenant)
        if isinstance(done.op, Reverse):
            original = self.reversal_of[done.transfer_ids[0]]
            ids = self.unit(lambda s: [reverse(s, original).id])
        else:
            ids = self.unit(PLANS[type(done.op)](done.op, done.number).work)
        assert ids == done.transfer_ids
        assert count_rows(self.database, self.tenant) == before
        event(f"replayed: {type(done.op).__name__}")


def plan_earn(op: Earn, number: int, gross_delta: int = 0) -> Plan:
    def work(s: Session) -> list[uuid.UUID]:
        earnings = business.post_earnings(
            s,
            order_id=uuid.UUID(int=number),
            specialist_id=SPECIALISTS[op.specialist],
            gross_minor=op.gross + gross_delta,
            currency=op.currency,
            fee_bps=op.fee_bps,
        )
        return [earnings.id]

    fee = fee_of(op.gross, op.fee_bps)
    legs = net(
        (key(K.CLIENT_RECEIVABLE, op.currency), op.gross),
        (key(K.SPECIALIST_PAYABLE, op.currency, op.specialist), -(op.gross - fee)),
        (key(K.PLATFORM_REVENUE, op.currency), -fee),
    )
    return Plan(work, [{k: v for k, v in legs.items() if v}])


def plan_fine(op: Fine, number: int) -> Plan:
    def work(s: Session) -> list[uuid.UUID]:
        fine = business.post_late_fine(
            s,
            order_id=uuid.UUID(int=number),
            specialist_id=SPECIALISTS[op.specialist],
            amount_minor=op.amount,
            currency=op.currency,
        )
        return [fine.id]

    payable = key(K.SPECIALIST_PAYABLE, op.currency, op.specialist)
    return Plan(work, [net((payable, op.amount), (key(K.FINES_INCOME, op.currency), -op.amount))])


def plan_payout(op: Payout, number: int) -> Plan:
    def work(s: Session) -> list[uuid.UUID]:
        ids = [
            business.initiate_payout(
                s,
                payout_id=f"p{number}",
                specialist_id=SPECIALISTS[op.specialist],
                amount_minor=op.amount,
                currency=op.currency,
            ).id
        ]
        if op.settle:
            settled = business.settle_payout(
                s, payout_id=f"p{number}", amount_minor=op.amount, currency=op.currency
            )
            ids.append(settled.id)
        return ids

    clearing = key(K.PAYOUT_CLEARING, op.currency)
    payable = key(K.SPECIALIST_PAYABLE, op.currency, op.specialist)
    transfers = [net((payable, op.amount), (clearing, -op.amount))]
    if op.settle:
        transfers.append(net((clearing, op.amount), (key(K.BANK, op.currency), -op.amount)))
    return Plan(work, transfers)


def plan_convert(op: Convert, number: int) -> Plan:
    source, target = op.pair
    legs_in = [in_target(a, source, target, op.rate) for a in op.amounts]
    whole = in_target(sum(op.amounts), source, target, op.rate)

    def work(s: Session) -> list[uuid.UUID]:
        owner = SPECIALISTS[op.specialist]
        done = fx.convert(
            s,
            key=f"fx:{number}",
            source_account=chart.account(s, K.SPECIALIST_PAYABLE, source, owner),
            target_account=chart.account(s, K.SPECIALIST_PAYABLE, target, owner),
            amounts=list(op.amounts),
            rate=op.rate,
            rate_source="property",
        )
        assert done.converted == legs_in
        assert done.remainder == whole - sum(legs_in)
        for transfer in (done.out_leg, done.in_leg):
            assert (transfer.meta["rate"], transfer.meta["rate_source"]) == (
                str(op.rate),
                "property",
            )
        return [done.out_leg.id, done.in_leg.id]

    if whole <= 0 or min(legs_in) <= 0:
        return Plan(work, [], refusal=Invalid)  # too small to convert at this rate
    total = sum(op.amounts)
    out = net(
        (key(K.SPECIALIST_PAYABLE, source, op.specialist), total),
        (key(K.FX_LIQUIDITY, source), -total),
    )
    into = net(
        (key(K.FX_LIQUIDITY, target), whole),
        (key(K.SPECIALIST_PAYABLE, target, op.specialist), -sum(legs_in)),
        (key(K.FX_GAIN_LOSS, target), -(whole - sum(legs_in))),
    )
    return Plan(work, [out, {k: v for k, v in into.items() if v}])


def plan_manual(op: Manual, number: int) -> Plan:
    def account(s: Session, index: int, cur: str) -> Account:
        kind, who = MANUAL[index]
        return chart.account(s, kind, cur, None if who is None else SPECIALISTS[who])

    def work(s: Session) -> list[uuid.UUID]:
        specs = [
            TransferSpec(
                kind="manual",
                idempotency_key=f"manual:{number}:{i}",
                reference=f"journal {number}",
                legs=[
                    leg
                    for debit, credit, cur, amt in lines
                    for leg in (
                        Leg.debit(account(s, debit, cur), amt),
                        Leg.credit(account(s, credit, cur), amt),
                    )
                ],
            )
            for i, lines in enumerate(op.transfers)
        ]
        return [t.id for t in post_batch(s, specs)]

    transfers = []
    for lines in op.transfers:
        pairs = []
        for debit, credit, cur, amt in lines:
            (dkind, dwho), (ckind, cwho) = MANUAL[debit], MANUAL[credit]
            pairs += [(key(dkind, cur, dwho), amt), (key(ckind, cur, cwho), -amt)]
        transfers.append(net(*pairs))
    return Plan(work, transfers)


PLANS: dict[type, Callable[[Any, int], Plan]] = {
    Earn: plan_earn,
    Fine: plan_fine,
    Payout: plan_payout,
    Convert: plan_convert,
    Manual: plan_manual,
}


def check_stored_transfers(run: Run) -> None:
    """Every transfer the model knows is stored, and nothing else."""
    with run.database.session(run.tenant) as s:
        stored = {t.id: t for t in s.scalars(select(Transfer))}
    assert set(stored) == set(run.legs)
    for reversal, original in run.reversal_of.items():
        assert stored[reversal].reverses_id == original


@settings(
    max_examples=25,
    deadline=None,
    database=None,  # no example database written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=3, max_size=10))
def test_any_sequence_of_ledger_operations_keeps_every_invariant(database, operations):
    run = Run(database, new_tenant(database, "prop"))
    for number, op in enumerate(operations, start=1):
        run.execute(op, number)
    check_stored_transfers(run)
    audit(database, run.tenant)
