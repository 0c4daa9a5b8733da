"""A corrupted frame never reaches the ledger: the gate fails, the run fails with it, and an
attempt to post the run is refused (nothing posted, the payables untouched)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from quire.errors import Conflict
from quire.payroll import lines, runs
from quire.payroll.expectations import GateInput, run_gate
from quire.payroll.models import RunStatus
from tests.quire.payroll.support import RATES, build_payroll_world, this_period
from tests.quire.payroll.test_runs import finance, payable, second_finance


def duplicated_line(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.iloc[[0]]], ignore_index=True)


def wrong_currency(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame["status"] == "payable", "payout_currency"] = "GBP"
    return frame


def rate_ten_percent_off(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    fx = frame.index[(frame["source_currency"] != frame["payout_currency"])][0]
    frame.loc[fx, "fx_rate"] = str(Decimal(frame.loc[fx, "fx_rate"]) * Decimal("1.1"))
    return frame


@pytest.mark.parametrize("corrupt", [duplicated_line, wrong_currency, rate_ten_percent_off])
def test_the_gate_blocks_a_corrupted_frame_and_nothing_is_posted(database, tmp_path, corrupt):
    pw = build_payroll_world(database, "acme")
    with database.session(pw.tenant_id, write=True) as session:
        run = runs.open_run(session, finance(pw), period=this_period())
        runs.fix_rates(session, run.id, RATES.to_json())
        frame = lines.compute(
            session,
            run_id=run.id,
            period=run.period,
            attempt=run.attempt,
            cutoff=run.cutoff_at,
            as_of=run.created_at,
            cooling_days=14,
            minimums={"EUR": 500},
            rate=RATES.rate,
            rate_source=RATES.source_label,
        )
        gate = GateInput(
            lines=corrupt(frame),
            selected_totals=lines.selected_totals(session, run.cutoff_at),
            provider_per_eur=RATES.per_eur,
            previous_per_eur=None,
            held_specialists=lines.held_specialists(session, run.created_at, 14),
            provider_tolerance=Decimal("0.001"),
            previous_tolerance=Decimal("0.05"),
        )
    result = run_gate(gate, data_docs_dir=tmp_path / "docs", run_name="corrupted")
    assert not result.success
    assert (tmp_path / "docs" / "index.html").exists()

    with database.session(pw.tenant_id, write=True) as session:
        runs.store_lines(session, runs.get_run(session, run.id), frame)
        failed = runs.record_gate(session, run.id, result.to_json())
        assert failed.status == RunStatus.FAILED
    with pytest.raises(Conflict), database.session(pw.tenant_id, write=True) as session:
        runs.decide(session, run.id, second_finance(pw), approve=True, comment="")
    with pytest.raises(Conflict), database.session(pw.tenant_id, write=True) as session:
        runs.post(session, run.id)
    assert payable(pw, "ana", "EUR") == 120_000
