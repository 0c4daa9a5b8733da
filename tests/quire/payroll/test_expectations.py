"""The payroll gate: a clean run passes; each corruption fails exactly the expectation that
guards against it and names the offending lines; Data Docs are written either way; and importing
the module does not load Great Expectations.

GX's context costs real time, so the corruptions share one frame (each on its own specialist)
and each gate runs once per module."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ledger.fx import convert_minor
from quire.payroll import expectations
from quire.payroll.expectations import GateInput, GateResult, run_gate
from quire.payroll.fx_rates import RateTable

ROOT = Path(__file__).resolve().parents[3]

# Units per EUR. KWD is not an ECB currency but the provider format carries any code.
RATES = RateTable(
    provider="www.ecb.europa.eu",
    rate_date=dt.date(2026, 11, 30),
    per_eur={
        "USD": Decimal("1.0812"),
        "JPY": Decimal("162.35"),
        "GBP": Decimal("0.8531"),
        "KWD": Decimal("0.3321"),
    },
)
# Last month's: every rate 1 % away, well inside the 5 % tolerance.
PREVIOUS = {code: rate * Decimal("1.01") for code, rate in RATES.per_eur.items()}

DE = "DE89370400440532013000"
FR = "FR1420041010050500013M02606"
NL = "NL91ABNA0417164300"
GB = "GB29NWBK60161331926819"
BE = "BE68539007547034"
BAD_IBAN = "DE89370400440532013001"  # DE's with the last digit changed: checksum fails

ONE_LINE = "One line per specialist and source currency"
OWN_CURRENCY = "Payout currency is the specialist's"
ISO_PAYOUT = "Payout currency is a valid ISO 4217 code"
NEAR_PROVIDER = "FX rate within tolerance of the provider's"
NEAR_PREVIOUS = "FX rate within tolerance of the previous run's"
WITHIN_PAYABLE = "Payout is no more than the payable"
TOTALS = "Per source currency, the lines add up to the selected payables"
SHARED_ACCOUNT = "No bank account shared by two specialists"
HELD = "No held specialist among the payable lines"
IBAN = "IBAN valid for every SEPA line"


def sid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"quire-test:{name}"))


@dataclass(frozen=True)
class Line:
    """One line as quire.payroll.lines.compute makes it, converted at the provider's rate."""

    name: str
    source: str
    payable: int
    payout_currency: str
    profile: str | None = None  # default: the payout currency
    withheld: str | None = None  # the hold reason
    scheme: str | None = "iban"
    iban: str | None = None
    fingerprint: str | None = None  # default: one account per specialist
    rate: Decimal | None = None  # default: the provider's
    payout: int | None = None  # default: the payable converted at `rate`

    def row(self) -> dict[str, Any]:
        rate = self.rate if self.rate is not None else RATES.rate(self.source, self.payout_currency)
        payout = self.payout
        if payout is None and self.withheld is None:
            payout = (
                self.payable
                if self.source == self.payout_currency
                else convert_minor(self.payable, self.source, self.payout_currency, rate)
            )
        payable = self.withheld is None
        return {
            "specialist_id": sid(self.name),
            "source_currency": self.source,
            "payable_minor": self.payable,
            "payout_currency": self.payout_currency,
            "profile_currency": self.profile if self.profile is not None else self.payout_currency,
            "payout_minor": payout if payable else None,
            "fx_rate": str(rate),
            "status": "payable" if payable else "withheld",
            "hold_reason": self.withheld,
            "scheme": self.scheme,
            "iban": self.iban,
            "account_fingerprint": (
                None
                if self.scheme is None
                else (self.fingerprint if self.fingerprint is not None else f"fp-{self.name}")
            ),
            "sepa": payable and self.payout_currency == "EUR" and self.scheme == "iban",
        }


def frame(lines: Iterable[Line]) -> pd.DataFrame:
    """The frame with the producer's dtypes (int64 payables, nullable Int64 payouts)."""
    result = pd.DataFrame([line.row() for line in lines])
    result["payable_minor"] = result["payable_minor"].astype("int64")
    result["payout_minor"] = result["payout_minor"].astype("Int64")
    result["sepa"] = result["sepa"].astype(bool)
    return result


def totals(lines: Iterable[Line]) -> dict[str, int]:
    """What SQL reports: per source currency, the sum of the selected payables."""
    sums: dict[str, int] = {}
    for line in lines:
        sums[line.source] = sums.get(line.source, 0) + line.payable
    return sums


CLEAN = [
    Line("anna", "EUR", 250_000, "EUR", iban=DE),
    Line("ben", "USD", 1_234_567, "EUR", iban=FR),
    Line("chiyo", "JPY", 987_654, "USD", scheme="local"),  # 0 decimals, a cross rate via EUR
    Line("dana", "KWD", 12_345, "JPY", scheme="local"),  # 3 decimals into 0, a cross rate
    Line("emil", "EUR", 50_000, "GBP", iban=GB),
    Line("emil", "USD", 70_000, "GBP", iban=GB),  # one specialist, two source currencies
    Line("hana", "KWD", 5_000, "KWD", scheme="local"),
    Line("fay", "EUR", 80_000, "EUR", iban=NL, withheld="on hold: under review"),
    Line("gus", "JPY", 4_000, "JPY", scheme=None, withheld="no bank details"),
]
CLEAN_HELD = frozenset({sid("fay")})


def gate_input(
    lines: list[Line],
    *,
    selected: dict[str, int] | None = None,
    held: frozenset[str] = CLEAN_HELD,
    previous: dict[str, Decimal] | None = PREVIOUS,
    data: pd.DataFrame | None = None,
) -> GateInput:
    return GateInput(
        lines=data if data is not None else frame(lines),
        selected_totals=selected if selected is not None else totals(lines),
        provider_per_eur=RATES.per_eur,
        previous_per_eur=previous,
        held_specialists=held,
        provider_tolerance=Decimal("0.001"),
        previous_tolerance=Decimal("0.05"),
    )


# Each defect on its own specialist, so each expectation's offenders are exactly known.
off_rate = (RATES.rate("USD", "JPY") * Decimal("0.9")).quantize(Decimal("0.0001"))
DEFECTS = [
    # One line split in two for the same key (totals still agree: only uniqueness fails).
    Line("ivo", "EUR", 180_000, "EUR", iban=BE),
    Line("ivo", "EUR", 120_000, "EUR", iban=BE),
    # Paid in USD though the profile says EUR (converted consistently, so only that is wrong).
    Line("jon", "EUR", 90_000, "USD", profile="EUR", scheme="local"),
    # A currency code that is not ISO 4217, on a withheld line (no rate or payout involved).
    Line("kim", "EUR", 10_000, "XYZ", scheme=None, withheld="no bank details", rate=Decimal(1)),
    # A rate 10 % under the provider's, and the payout computed with it.
    Line("lea", "USD", 333_333, "JPY", scheme="local", rate=off_rate),
    # One cent more than the payable.
    Line("max", "EUR", 40_000, "EUR", iban=DE, fingerprint="fp-max", payout=40_001),
    # Two payable specialists paid into one account; a withheld third shares it too.
    Line("nia", "GBP", 20_000, "GBP", iban=GB, fingerprint="fp-shared"),
    Line("omar", "GBP", 30_000, "GBP", iban=GB, fingerprint="fp-shared"),
    Line("pia", "GBP", 25_000, "GBP", iban=GB, fingerprint="fp-shared", withheld="on hold: x"),
    # Held (bank details changed last week) but marked payable.
    Line("quin", "EUR", 60_000, "EUR", iban=NL),
    # A SEPA line whose IBAN fails its checksum; a withheld one with a bad IBAN is not checked.
    Line("rosa", "EUR", 70_000, "EUR", iban=BAD_IBAN),
    Line("sam", "EUR", 15_000, "EUR", iban=BAD_IBAN, withheld="under the minimum payout"),
]
DEFECT_HELD = CLEAN_HELD | {sid("pia"), sid("quin")}


def defect_totals() -> dict[str, int]:
    """SQL disagrees on KWD by one fils, and knows a CHF payable the frame lacks."""
    selected = totals(CLEAN + DEFECTS)
    selected["KWD"] += 1
    selected["CHF"] = 500
    return selected


@pytest.fixture(scope="module")
def docs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-docs")


@pytest.fixture(scope="module")
def clean(docs_root: Path) -> GateResult:
    return run_gate(gate_input(CLEAN), data_docs_dir=docs_root / "clean", run_name="clean")


@pytest.fixture(scope="module")
def corrupted(docs_root: Path) -> GateResult:
    gate = gate_input(CLEAN + DEFECTS, selected=defect_totals(), held=DEFECT_HELD, previous=None)
    return run_gate(gate, data_docs_dir=docs_root / "corrupted", run_name="corrupted")


@pytest.fixture(scope="module")
def rates_moved(docs_root: Path) -> GateResult:
    """Today's rates are the provider's, but GBP moved 7 % since the previous run (so EUR->GBP
    moved 7 % and USD->GBP, whose USD rate moved 1 %, about 6 %)."""
    previous = dict(PREVIOUS, GBP=RATES.per_eur["GBP"] * Decimal("1.07"))
    return run_gate(
        gate_input(CLEAN, previous=previous),
        data_docs_dir=docs_root / "moved",
        run_name="moved",
    )


def failures(result: GateResult) -> dict[str, list[dict[str, Any]]]:
    return {failed.name: failed.offending for failed in result.failed}


def specialists(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(row["specialist_id"] for row in rows)


def ids(*names: str) -> list[str]:
    return sorted(sid(name) for name in names)


def test_a_clean_run_passes_every_expectation(clean: GateResult) -> None:
    assert clean.failed == []
    assert clean.success
    assert clean.suite == f"{expectations.SUITE_NAME}@{expectations.SUITE_VERSION}"
    assert clean.evaluated == 15  # 13 over the lines, the previous run's rates, the totals


def test_the_result_is_json_for_the_run_and_the_artifact(corrupted: GateResult) -> None:
    data = json.loads(json.dumps(corrupted.to_json()))
    assert data["success"] is False
    assert data["suite"] == "payroll-gate@1"
    assert data["data_docs_index"].endswith("index.html")
    assert {failed["name"] for failed in data["failed"]} == set(failures(corrupted))
    for failed in data["failed"]:
        assert failed["count"] >= len(failed["offending"]) > 0
        assert failed["description"]


def test_each_corruption_fails_exactly_its_own_expectation(corrupted: GateResult) -> None:
    assert not corrupted.success
    found = failures(corrupted)
    assert set(found) == {
        ONE_LINE,
        OWN_CURRENCY,
        ISO_PAYOUT,
        NEAR_PROVIDER,
        WITHIN_PAYABLE,
        TOTALS,
        SHARED_ACCOUNT,
        HELD,
        IBAN,
    }
    assert specialists(found[ONE_LINE]) == ids("ivo", "ivo")
    assert specialists(found[OWN_CURRENCY]) == ids("jon")
    assert specialists(found[ISO_PAYOUT]) == ids("kim")
    assert specialists(found[NEAR_PROVIDER]) == ids("lea")
    assert specialists(found[WITHIN_PAYABLE]) == ids("max")
    assert specialists(found[SHARED_ACCOUNT]) == ids("nia", "omar")
    assert specialists(found[HELD]) == ids("quin")
    assert specialists(found[IBAN]) == ids("rosa")


def test_offending_rows_carry_the_values_that_broke_the_rule(corrupted: GateResult) -> None:
    found = failures(corrupted)
    (wrong,) = found[OWN_CURRENCY]
    assert (wrong["payout_currency"], wrong["profile_currency"]) == ("USD", "EUR")
    assert found[ISO_PAYOUT][0]["payout_currency"] == "XYZ"
    (rate,) = found[NEAR_PROVIDER]
    assert rate["source_currency"] == "USD"
    assert rate["fx_rate"] == str(off_rate)
    assert rate["provider_rate"] == str(RATES.rate("USD", "JPY"))
    assert rate["provider_deviation"] == "10.0000 %"
    assert 99_990_000 < rate["provider_deviation_ppb"] < 100_010_000
    (over,) = found[WITHIN_PAYABLE]
    assert (over["payable_minor"], over["payout_minor"], over["payout_limit_minor"]) == (
        40_000,
        40_001,
        40_000,
    )
    assert {row["account_fingerprint"] for row in found[SHARED_ACCOUNT]} == {"fp-shared"}
    assert found[IBAN][0]["iban"] == BAD_IBAN
    assert {row["status"] for rows in found.values() for row in rows if "status" in row} == {
        "payable",
        "withheld",  # kim's invalid currency: that rule covers withheld lines too
    }


def test_totals_that_disagree_with_sql_name_each_currency(corrupted: GateResult) -> None:
    rows = {row["currency"]: row for row in failures(corrupted)[TOTALS]}
    assert set(rows) == {"KWD", "CHF"}
    assert rows["KWD"]["selected_total_minor"] == rows["KWD"]["lines_total_minor"] + 1
    assert rows["CHF"] == {
        "currency": "CHF",
        "lines_total_minor": None,
        "selected_total_minor": 500,
    }


def test_a_rate_near_the_provider_but_far_from_the_previous_run_fails(
    rates_moved: GateResult,
) -> None:
    found = failures(rates_moved)
    assert set(found) == {NEAR_PREVIOUS}
    assert specialists(found[NEAR_PREVIOUS]) == ids("emil", "emil")  # both GBP lines
    assert {row["payout_currency"] for row in found[NEAR_PREVIOUS]} == {"GBP"}


def test_a_line_exactly_duplicated_fails_uniqueness_and_the_totals(docs_root: Path) -> None:
    data = frame(CLEAN)
    data = pd.concat([data, data.iloc[[1]]], ignore_index=True)  # ben's USD line twice
    result = run_gate(
        gate_input(CLEAN, data=data), data_docs_dir=docs_root / "duplicate", run_name="dup"
    )
    found = failures(result)
    assert set(found) == {ONE_LINE, TOTALS}  # it would pay ben twice, and SQL says so
    assert specialists(found[ONE_LINE]) == ids("ben", "ben")
    assert [row["currency"] for row in found[TOTALS]] == ["USD"]


def test_data_docs_are_written_for_passing_and_failing_runs(
    clean: GateResult, corrupted: GateResult
) -> None:
    for result in (clean, corrupted):
        assert result.data_docs_index is not None
        assert result.data_docs_index.name == "index.html"
        html = result.data_docs_index.read_text()
        assert expectations.SUITE_NAME in html
        pages = list(result.data_docs_index.parent.rglob("*.html"))
        assert any("validations" in page.parts for page in pages)
    failed_pages = "".join(
        page.read_text() for page in corrupted.data_docs_index.parent.rglob("validations/**/*.html")
    )
    assert HELD in failed_pages  # the expectations read as finance wrote them


def test_the_gate_reads_raw_columns_not_a_producers_comparison(clean: GateResult) -> None:
    """The payout limit comes from the gate's own conversion: a frame that brings its own
    `payout_limit_minor` column does not change the verdict."""
    data = frame(CLEAN)
    data.loc[data["specialist_id"] == sid("anna"), "payout_minor"] = 250_001
    data["payout_limit_minor"] = 10**12
    checked = expectations.checked_lines(gate_input(CLEAN, data=data))
    anna = checked[checked["specialist_id"] == sid("anna")].iloc[0]
    assert anna["payout_limit_minor"] == 250_000


def test_the_payout_limit_is_exact_in_integer_arithmetic() -> None:
    big = replace(CLEAN[2], payable=9_000_000_000_000)  # 90 billion yen: beyond float's exactness
    checked = expectations.checked_lines(gate_input([big, *CLEAN[3:4]]))
    rate = RATES.rate("JPY", "USD")
    numerator = int(str(rate).replace(".", ""))
    places = len(str(rate).split(".")[1])
    limit = 9_000_000_000_000 * numerator * 100 // 10**places + 1
    assert checked.iloc[0]["payout_limit_minor"] == limit
    assert checked.iloc[0]["payout_minor"] == convert_minor(9_000_000_000_000, "JPY", "USD", rate)
    kwd = checked.iloc[1]  # 12.345 KWD into yen
    assert kwd["payout_limit_minor"] in (kwd["payout_minor"], kwd["payout_minor"] + 1)


def test_importing_the_module_does_not_import_great_expectations() -> None:
    code = (
        "import sys, quire.payroll.expectations as e; "
        "assert e.run_gate; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'great_expectations'); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    env = dict(os.environ, GX_ANALYTICS_ENABLED="false")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def bench(count: int = 10_000) -> None:
    """Not a test: the gate's time on `count` lines (GX's import timed apart). Run with
    `.venv/bin/python -c "from tests.quire.payroll.test_expectations import bench; bench()"`."""
    import tempfile
    import time

    from schwifty import IBAN as Iban

    pairs = [("EUR", "EUR"), ("USD", "EUR"), ("JPY", "USD"), ("KWD", "JPY"), ("EUR", "GBP")]
    spec = []
    for i in range(count):
        source, target = pairs[i % len(pairs)]
        iban = str(Iban.generate("DE", bank_code="37040044", account_code=str(10_000 + i)))
        spec.append(
            Line(
                f"bench-{i}",
                source,
                10_000 + 37 * i,
                target,
                iban=iban if target == "EUR" else None,
                scheme="iban" if target == "EUR" else "local",
                withheld="under the minimum payout" if i % 50 == 0 else None,
            )
        )
    gate = gate_input(spec, held=frozenset())
    started = time.perf_counter()
    import great_expectations  # noqa: F401

    imported = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as docs:
        for attempt in (1, 2):
            result = run_gate(gate, data_docs_dir=Path(docs), run_name=f"bench-{attempt}")
            print(f"run {attempt}: success={result.success} gate={result.seconds:.2f}s")
    print(f"{count} lines; great_expectations import {imported:.2f}s")
