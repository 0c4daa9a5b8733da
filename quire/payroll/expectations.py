"""The payroll gate: a Great Expectations suite over a run's computed lines, before anything is
posted.

Nothing is paid unless every expectation holds. The suite is defined here, in code, and
versioned (`SUITE_VERSION`): a run records which version judged it, so bump it whenever an
expectation changes.

What GX checks is a *checked frame* this module derives from the producer's raw columns: the
payout limit, the provider's and the previous run's cross rates and the lines' deviation from
them, how many specialists share a bank account, whether the specialist is held, whether the
IBAN is valid. Each is computed here with exact integer / Decimal arithmetic, per column or per
currency pair, never taken from a column the producer supplies: a gate that trusted the
producer's own arithmetic would only check that the producer agrees with itself.

Great Expectations takes seconds to import, so it is imported only inside `run_gate`; importing
this module costs nothing of it. The context is ephemeral (in-memory stores), analytics and
progress bars are off, and Data Docs HTML is written under the directory the caller names, for a
passing run as for a failing one.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    InvalidOperation,
    localcontext,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quire.money import UnknownCurrency, currency_codes, exponent
from quire.payroll.fx_rates import RATE_SIGNIFICANT_DIGITS

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.expectations import Expectation

SUITE_NAME = "payroll-gate"
SUITE_VERSION = 1  # bump whenever an expectation below changes

MAX_OFFENDING_ROWS = 20
PAYABLE = "payable"

# GX names of the two suites (one per data asset); both carry the version, so Data Docs of
# different versions never mix under one name.
LINES_SUITE = f"{SUITE_NAME}-v{SUITE_VERSION}-lines"
TOTALS_SUITE = f"{SUITE_NAME}-v{SUITE_VERSION}-totals"

_WORKING_PRECISION = 50
PPB = Decimal(10) ** 9
# The rate a pair is quoted at: the cross rate rounded as quire.payroll.fx_rates.RateTable rounds
# it, so the payout limit is the payable converted at exactly the rate a line must use.
_QUOTE_CONTEXT = Context(prec=RATE_SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN)

# GX keeps its current project in a process-wide singleton (the stores a validation writes to):
# two gates in one process, on two threads, take turns rather than share it.
_GX_LOCK = threading.Lock()

# Columns every offending line row shows, before the expectation's own columns.
_KEY_COLUMNS = ["specialist_id", "source_currency", "status"]


@dataclass(frozen=True)
class GateInput:
    """Everything the gate judges, each part from its own source.

    `lines` is the computed frame (quire.payroll.lines.COLUMNS, withheld lines included);
    `selected_totals` comes straight from SQL (per source currency, the sum of the selected
    payables), independent of the frame; `held_specialists` too (on hold, or bank details changed
    within the cooling period). Rates are units per EUR; tolerances are fractions (0.001 = 0.1 %).
    """

    lines: pd.DataFrame
    selected_totals: Mapping[str, int]
    provider_per_eur: Mapping[str, Decimal]
    previous_per_eur: Mapping[str, Decimal] | None
    held_specialists: frozenset[str]
    provider_tolerance: Decimal
    previous_tolerance: Decimal


@dataclass(frozen=True)
class FailedExpectation:
    """One failed expectation as finance reads it: what was expected, on which column, and the
    first `MAX_OFFENDING_ROWS` offending rows (JSON-safe) out of `count`."""

    name: str
    description: str
    column: str | None
    offending: list[dict[str, Any]]
    count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "column": self.column,
            "offending": self.offending,
            "count": self.count,
        }


@dataclass(frozen=True)
class GateResult:
    success: bool
    suite: str  # name@version
    evaluated: int  # expectations evaluated
    failed: list[FailedExpectation] = field(default_factory=list)
    data_docs_index: Path | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """What the run stores and the artifact shows (plain JSON types only)."""
        return {
            "success": self.success,
            "suite": self.suite,
            "evaluated": self.evaluated,
            "failed": [failed.to_json() for failed in self.failed],
            "data_docs_index": str(self.data_docs_index) if self.data_docs_index else None,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Check:
    """One expectation: its stable key, the name and sentence finance reads, the column it is
    about, the extra columns its offending rows show, and the GX expectation itself."""

    key: str
    name: str
    description: str
    column: str | None
    shows: list[str]
    expectation: Expectation


# --- the checked frames: derived from raw columns, exactly ------------------------------------


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _ints(series: pd.Series) -> pd.Series:
    """A column of Python ints (or None): exact arithmetic beyond int64, no float anywhere."""
    return pd.Series(
        [None if pd.isna(v) else int(v) for v in series.tolist()],
        index=series.index,
        dtype=object,
    )


def _exponent(code: str) -> int | None:
    try:
        return exponent(code)
    except (UnknownCurrency, TypeError):
        return None


def _cross(per_eur: Mapping[str, Decimal], source: str, target: str) -> Decimal | None:
    """Units of `target` per 1 `source` through EUR (50 digits), None if either is missing."""
    if source == target:
        return Decimal(1)
    source_rate = Decimal(1) if source == "EUR" else per_eur.get(source)
    target_rate = Decimal(1) if target == "EUR" else per_eur.get(target)
    if source_rate is None or target_rate is None or source_rate <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = _WORKING_PRECISION
        return Decimal(target_rate) / Decimal(source_rate)


def _deviation(line_rate: str, reference: Decimal | None) -> Decimal | None:
    """|line rate / reference - 1|; None when the line's rate is not a positive number or there
    is no reference to compare with."""
    if reference is None:
        return None
    try:
        rate = Decimal(line_rate)
    except (InvalidOperation, TypeError, ValueError):
        return None
    if not rate.is_finite() or rate <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = _WORKING_PRECISION
        return abs(rate / reference - 1)


def _ppb(deviation: Decimal | None) -> int | None:
    """A deviation in parts per billion, rounded up: an int, so GX compares and serialises it
    exactly, and `ppb <= tolerance in ppb` holds exactly when the deviation is within it."""
    if deviation is None:
        return None
    return int((deviation * PPB).to_integral_value(rounding=ROUND_CEILING))


def _percent(deviation: Decimal | None) -> str | None:
    return None if deviation is None else f"{deviation * 100:.4f} %"


def tolerance_ppb(tolerance: Decimal) -> int:
    """A tolerance in whole parts per billion (rounded down: never looser than configured)."""
    return int((Decimal(tolerance) * PPB).to_integral_value(rounding=ROUND_FLOOR))


def _pair_columns(frame: pd.DataFrame, gate: GateInput) -> pd.DataFrame:
    """Per distinct (source, payout currency, line rate): the provider's rate and quote, the
    previous run's rate, and the line's deviations; a handful of pairs, not one per line."""
    triples = frame[["source_currency", "payout_currency", "fx_rate"]].drop_duplicates()
    rows = []
    for source, target, line_rate in triples.itertuples(index=False):
        provider = _cross(gate.provider_per_eur, source, target)
        previous = _cross(gate.previous_per_eur, source, target) if gate.previous_per_eur else None
        quote = None if provider is None else _QUOTE_CONTEXT.plus(provider)
        shift = None
        numerator = None
        if quote is not None and source != target:
            exp_source, exp_target = _exponent(source), _exponent(target)
            if exp_source is not None and exp_target is not None:
                _, digits, exp = quote.as_tuple()
                numerator = int("".join(map(str, digits)))
                shift = exp_target - exp_source + int(exp)
        rows.append(
            {
                "source_currency": source,
                "payout_currency": target,
                "fx_rate": line_rate,
                "provider_rate": None if quote is None else str(quote),
                "provider_deviation": _percent(_deviation(line_rate, provider)),
                "provider_deviation_ppb": _ppb(_deviation(line_rate, provider)),
                "previous_rate": None if previous is None else str(_QUOTE_CONTEXT.plus(previous)),
                "previous_deviation": _percent(_deviation(line_rate, previous)),
                "previous_deviation_ppb": _ppb(_deviation(line_rate, previous)),
                "_numerator": numerator,
                "_shift": shift,
            }
        )
    columns = [*triples.columns, *_PAIR_EXTRA]
    # Column by column as objects: pandas would turn ints beside a None into floats.
    return pd.DataFrame(
        {c: pd.Series([row[c] for row in rows], dtype=object) for c in columns}, columns=columns
    )


_PAIR_EXTRA = [
    "provider_rate",
    "provider_deviation",
    "provider_deviation_ppb",
    "previous_rate",
    "previous_deviation",
    "previous_deviation_ppb",
    "_numerator",
    "_shift",
]


def _payout_limit(frame: pd.DataFrame) -> pd.Series:
    """The most a line may pay: the payable itself in its own currency; across currencies the
    payable converted at the provider's quoted rate, rounded down, plus one minor unit for the
    half-even rounding. Python-int arithmetic over whole columns (no overflow, no float)."""
    payable = frame["payable_minor"]
    same = frame["source_currency"] == frame["payout_currency"]
    known = frame["_shift"].notna() & payable.notna() & ~same
    limit = pd.Series(None, index=frame.index, dtype=object)
    limit[same] = payable[same]
    if known.any():
        scaled = payable[known] * frame.loc[known, "_numerator"]
        shift = frame.loc[known, "_shift"].astype(int)
        up = shift >= 0
        factor = pd.Series([10 ** abs(s) for s in shift.tolist()], index=shift.index, dtype=object)
        converted = pd.Series(index=scaled.index, dtype=object)
        converted[up] = scaled[up] * factor[up]
        converted[~up] = scaled[~up] // factor[~up] + 1
        limit[known] = converted
    return limit


def _iban_validity(frame: pd.DataFrame) -> pd.Series:
    """Whether each SEPA line's IBAN is valid (schwifty), each distinct IBAN validated once;
    None for lines the rule does not cover."""
    from schwifty import IBAN
    from schwifty.exceptions import SchwiftyException

    checked = frame["sepa"] & (frame["status"] == PAYABLE)
    verdicts: dict[Any, bool] = {}
    for iban in frame.loc[checked, "iban"].unique().tolist():
        try:
            IBAN(iban)
            verdicts[iban] = True
        except (SchwiftyException, ValueError, TypeError):
            verdicts[iban] = False
    return pd.Series(
        [verdicts.get(iban) for iban in frame["iban"].tolist()], index=frame.index, dtype=object
    ).where(checked, None)


def checked_lines(gate: GateInput) -> pd.DataFrame:
    """The frame GX validates: the producer's raw columns, normalised to exact Python types, with
    every comparison column derived here."""
    raw = gate.lines
    frame = pd.DataFrame(
        {
            "line": np.arange(1, len(raw) + 1),
            "specialist_id": raw["specialist_id"].astype(str).to_numpy(),
            "source_currency": raw["source_currency"].map(_text).to_numpy(),
            "status": raw["status"].map(_text).to_numpy(),
            "payable_minor": _ints(raw["payable_minor"]).to_numpy(),
            "payout_currency": raw["payout_currency"].map(_text).to_numpy(),
            "profile_currency": raw["profile_currency"].map(_text).to_numpy(),
            "payout_minor": _ints(raw["payout_minor"]).to_numpy(),
            "fx_rate": raw["fx_rate"].map(_text).to_numpy(),
            "hold_reason": raw["hold_reason"].map(_text).to_numpy(),
            "iban": raw["iban"].map(_text).to_numpy(),
            "account_fingerprint": raw["account_fingerprint"].map(_text).to_numpy(),
            "sepa": raw["sepa"].fillna(False).astype(bool).to_numpy(),
        }
    ).astype({"payable_minor": object, "payout_minor": object})
    pairs = _pair_columns(frame, gate)
    frame = frame.merge(pairs, on=["source_currency", "payout_currency", "fx_rate"], how="left")
    frame["payout_limit_minor"] = _payout_limit(frame)
    frame = frame.drop(columns=["_numerator", "_shift"])

    payable = frame["status"] == PAYABLE
    # Rate rules are about lines that pay; a withheld line's rate is not used.
    for column in (*_PAIR_EXTRA[:-2], "payout_limit_minor"):
        frame.loc[~payable, column] = None

    accounts = frame.loc[payable & frame["account_fingerprint"].notna()]
    sharing = accounts.groupby("account_fingerprint")["specialist_id"].nunique()
    frame["specialists_on_account"] = _ints(
        frame["account_fingerprint"].map(sharing).where(payable)
    )

    frame["held"] = frame["specialist_id"].isin(gate.held_specialists)
    frame["iban_valid"] = _iban_validity(frame)
    return frame


def checked_totals(gate: GateInput, lines: pd.DataFrame) -> pd.DataFrame:
    """Per source currency: the frame's sum of payables (all lines) beside the SQL total; a
    currency on only one side has None on the other."""
    frame_totals = lines.groupby("source_currency", dropna=False)["payable_minor"].sum()
    currencies = sorted(
        {str(c) for c in frame_totals.index} | {str(c) for c in gate.selected_totals}
    )
    by_text = {str(c): int(total) for c, total in frame_totals.items()}
    return pd.DataFrame(
        {
            "currency": currencies,
            "lines_total_minor": pd.Series([by_text.get(c) for c in currencies], dtype=object),
            "selected_total_minor": pd.Series(
                [
                    int(gate.selected_totals[c]) if c in gate.selected_totals else None
                    for c in currencies
                ],
                dtype=object,
            ),
        }
    )


# --- the suite -----------------------------------------------------------------------------


def _line_checks(gate: GateInput) -> list[_Check]:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import (
        Column,
        ComparisonCondition,
        Operator,
    )

    payable = Column("status") == PAYABLE
    sepa = payable & ComparisonCondition(
        column=Column("sepa"), operator=Operator.EQUAL, parameter=True
    )
    codes = currency_codes()
    rate_columns = ["payout_currency", "fx_rate"]
    pct = f"{(Decimal(gate.provider_tolerance) * 100).normalize():f}"
    previous_pct = f"{(Decimal(gate.previous_tolerance) * 100).normalize():f}"
    checks = [
        _Check(
            "one_line_per_specialist_and_currency",
            "One line per specialist and source currency",
            "No specialist has two lines for the same source currency (a duplicated line would "
            "pay twice).",
            None,
            ["payable_minor", "payout_minor"],
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["specialist_id", "source_currency"]),
        ),
        _Check(
            "payout_present",
            "Every payable line has a payout amount",
            "A line marked payable carries the amount it pays.",
            "payout_minor",
            ["payout_currency", "payout_minor"],
            gxe.ExpectColumnValuesToNotBeNull(column="payout_minor", row_condition=payable),
        ),
        _Check(
            "payout_positive",
            "Payout amount is more than zero",
            "A payable line pays at least one minor unit of its payout currency.",
            "payout_minor",
            ["payout_currency", "payout_minor"],
            gxe.ExpectColumnValuesToBeBetween(
                column="payout_minor", min_value=1, row_condition=payable
            ),
        ),
        _Check(
            "payout_within_payable",
            "Payout is no more than the payable",
            "Payout is at most the payable converted at the provider's rate (plus one minor "
            "unit for rounding), or at most the payable itself in the same currency.",
            "payout_minor",
            ["payable_minor", "payout_currency", "payout_minor", "payout_limit_minor"],
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="payout_limit_minor",
                column_B="payout_minor",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                row_condition=payable,
            ),
        ),
        _Check(
            "payout_currency_is_the_specialists",
            "Payout currency is the specialist's",
            "Each line pays in the currency the specialist's profile names.",
            "payout_currency",
            ["payout_currency", "profile_currency"],
            gxe.ExpectColumnPairValuesToBeEqual(
                column_A="payout_currency",
                column_B="profile_currency",
                ignore_row_if="either_value_is_missing",
            ),
        ),
        _Check(
            "payable_specialist_has_profile",
            "Every payable line's specialist has a payout currency",
            "A line is paid only to a specialist whose profile names a payout currency.",
            "profile_currency",
            ["payout_currency", "profile_currency"],
            gxe.ExpectColumnValuesToNotBeNull(column="profile_currency", row_condition=payable),
        ),
        _Check(
            "payout_currency_is_iso4217",
            "Payout currency is a valid ISO 4217 code",
            "The payout currency is an active ISO 4217 currency with a minor unit.",
            "payout_currency",
            ["payout_currency"],
            gxe.ExpectColumnValuesToBeInSet(column="payout_currency", value_set=codes),
        ),
        _Check(
            "source_currency_is_iso4217",
            "Source currency is a valid ISO 4217 code",
            "The source currency is an active ISO 4217 currency with a minor unit.",
            "source_currency",
            [],
            gxe.ExpectColumnValuesToBeInSet(column="source_currency", value_set=codes),
        ),
        _Check(
            "rate_comparable_with_provider",
            "Every payable line's FX rate can be checked against the provider's",
            "The line's rate is a positive number and the provider quotes both currencies.",
            "fx_rate",
            ["payout_currency", "fx_rate", "provider_rate"],
            gxe.ExpectColumnValuesToNotBeNull(
                column="provider_deviation_ppb", row_condition=payable
            ),
        ),
        _Check(
            "rate_near_provider",
            "FX rate within tolerance of the provider's",
            f"Each payable line's rate is within {pct} % "
            f"({tolerance_ppb(gate.provider_tolerance):,} parts per billion) of the provider's "
            "cross rate.",
            "fx_rate",
            [*rate_columns, "provider_rate", "provider_deviation", "provider_deviation_ppb"],
            gxe.ExpectColumnValuesToBeBetween(
                column="provider_deviation_ppb",
                min_value=0,
                max_value=tolerance_ppb(gate.provider_tolerance),
                row_condition=payable,
            ),
        ),
        _Check(
            "no_shared_bank_account",
            "No bank account shared by two specialists",
            "Among payable lines, each bank account belongs to one specialist only.",
            "account_fingerprint",
            ["account_fingerprint", "specialists_on_account"],
            gxe.ExpectColumnValuesToBeBetween(
                column="specialists_on_account", max_value=1, row_condition=payable
            ),
        ),
        _Check(
            "no_held_specialist_paid",
            "No held specialist among the payable lines",
            "A specialist on hold, or whose bank details changed within the cooling period, "
            "is not paid.",
            "specialist_id",
            ["hold_reason", "payout_minor"],
            gxe.ExpectColumnValuesToBeInSet(
                column="held", value_set=[False], row_condition=payable
            ),
        ),
        _Check(
            "sepa_iban_valid",
            "IBAN valid for every SEPA line",
            "Each payable EUR line paid by SEPA credit transfer has a valid IBAN.",
            "iban",
            ["iban"],
            gxe.ExpectColumnValuesToBeInSet(
                column="iban_valid", value_set=[True], row_condition=sepa
            ),
        ),
    ]
    if gate.previous_per_eur:
        after = next(i for i, check in enumerate(checks) if check.key == "rate_near_provider")
        checks.insert(
            after + 1,
            _Check(
                "rate_near_previous_run",
                "FX rate within tolerance of the previous run's",
                f"Each payable line's rate is within {previous_pct} % "
                f"({tolerance_ppb(gate.previous_tolerance):,} parts per billion) of the previous "
                "run's cross rate, where the previous run had one.",
                "fx_rate",
                [*rate_columns, "previous_rate", "previous_deviation", "previous_deviation_ppb"],
                gxe.ExpectColumnValuesToBeBetween(
                    column="previous_deviation_ppb",
                    min_value=0,
                    max_value=tolerance_ppb(gate.previous_tolerance),
                    row_condition=payable,
                ),
            ),
        )
    return checks


def _totals_checks() -> list[_Check]:
    import great_expectations.expectations as gxe

    return [
        _Check(
            "totals_match_selected_payables",
            "Per source currency, the lines add up to the selected payables",
            "The sum of every line's payable (paid and withheld) per source currency equals the "
            "sum of the selected payables in the ledger; a currency on one side only fails.",
            "payable_minor",
            ["currency", "lines_total_minor", "selected_total_minor"],
            gxe.ExpectColumnPairValuesToBeEqual(
                column_A="lines_total_minor",
                column_B="selected_total_minor",
                ignore_row_if="neither",
            ),
        )
    ]


# --- running it ----------------------------------------------------------------------------


def _context(data_docs_dir: Path) -> EphemeralDataContext:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites={
            SUITE_NAME: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(data_docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _validate(
    context: EphemeralDataContext,
    *,
    asset_name: str,
    suite_name: str,
    checks: list[_Check],
    frame: pd.DataFrame,
    index_columns: list[str],
    run_id: Any,
) -> ExpectationSuiteValidationResult:
    import great_expectations as gx

    source = context.data_sources.add_pandas(f"{SUITE_NAME}-{asset_name}")
    batch = source.add_dataframe_asset(asset_name).add_batch_definition_whole_dataframe(asset_name)
    suite = gx.ExpectationSuite(
        name=suite_name, meta={"quire_suite": SUITE_NAME, "quire_suite_version": SUITE_VERSION}
    )
    for check in checks:
        check.expectation.description = check.name
        check.expectation.notes = check.description
        check.expectation.meta = {"quire_check": check.key}
        check.expectation.catch_exceptions = True
        suite.add_expectation(check.expectation)
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    return definition.run(
        batch_parameters={"dataframe": frame},
        result_format={
            "result_format": "COMPLETE",
            "unexpected_index_column_names": index_columns,
            "return_unexpected_index_query": False,
        },
        run_id=run_id,
    )


def _json_safe(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else str(value)
    return str(value)


def _offending(frame: pd.DataFrame, key: str, unexpected: list[Any], shows: list[str]) -> list:
    """The first offending rows, found by the key column GX reported for each."""
    keys = []
    for item in unexpected:
        value = item.get(key) if isinstance(item, dict) else item
        if value not in keys:
            keys.append(value)
        if len(keys) >= MAX_OFFENDING_ROWS:
            break
    rows = frame[frame[key].isin(keys)].head(MAX_OFFENDING_ROWS)
    columns = list(dict.fromkeys([c for c in shows if c in rows.columns]))
    return [
        {column: _json_safe(value) for column, value in zip(columns, row, strict=True)}
        for row in rows[columns].itertuples(index=False)
    ]


def _failures(
    result: ExpectationSuiteValidationResult,
    checks: list[_Check],
    frame: pd.DataFrame,
    key: str,
    key_columns: list[str],
) -> list[FailedExpectation]:
    by_key = {check.key: check for check in checks}
    failed = []
    for outcome in result.results:
        if outcome.success:
            continue
        check = by_key[(outcome.expectation_config.meta or {})["quire_check"]]
        description = check.description
        raised = (outcome.exception_info or {}).get("raised_exception")
        if raised:
            message = (outcome.exception_info or {}).get("exception_message")
            description += f" (could not be evaluated: {message})"
        details = outcome.result or {}
        unexpected = details.get("unexpected_index_list") or []
        failed.append(
            FailedExpectation(
                name=check.name,
                description=description,
                column=check.column,
                offending=_offending(frame, key, unexpected, [*key_columns, *check.shows]),
                count=int(details.get("unexpected_count") or len(unexpected)),
            )
        )
    return failed


def _validate_both(
    data_docs_dir: Path,
    run_name: str,
    lines: pd.DataFrame,
    line_checks: list[_Check],
    totals: pd.DataFrame,
    total_checks: list[_Check],
) -> tuple[ExpectationSuiteValidationResult, ExpectationSuiteValidationResult]:
    """Both suites in one fresh ephemeral context, then its Data Docs site built."""
    from great_expectations.core.run_identifier import RunIdentifier

    context = _context(data_docs_dir)
    run_id = RunIdentifier(run_name=run_name)
    lines_result = _validate(
        context,
        asset_name="lines",
        suite_name=LINES_SUITE,
        checks=line_checks,
        frame=lines,
        index_columns=["line", "specialist_id", "source_currency"],
        run_id=run_id,
    )
    totals_result = _validate(
        context,
        asset_name="totals",
        suite_name=TOTALS_SUITE,
        checks=total_checks,
        frame=totals,
        index_columns=["currency"],
        run_id=run_id,
    )
    context.build_data_docs(site_names=[SUITE_NAME])
    return lines_result, totals_result


def run_gate(gate: GateInput, *, data_docs_dir: Path, run_name: str) -> GateResult:
    """Validate the run's lines; write Data Docs under `data_docs_dir`; say what failed.

    Returns success False with every failed expectation and its offending rows rather than
    raising: the caller fails the run and posts nothing. `seconds` excludes GX's import.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401  (imported before the clock starts)

    started = time.perf_counter()
    lines = checked_lines(gate)
    totals = checked_totals(gate, lines)
    line_checks, total_checks = _line_checks(gate), _totals_checks()

    data_docs_dir.mkdir(parents=True, exist_ok=True)
    with _GX_LOCK:
        lines_result, totals_result = _validate_both(
            data_docs_dir, run_name, lines, line_checks, totals, total_checks
        )
    failed = [
        *_failures(lines_result, line_checks, lines, "line", _KEY_COLUMNS),
        *_failures(totals_result, total_checks, totals, "currency", []),
    ]
    index = data_docs_dir / "index.html"
    return GateResult(
        success=not failed and bool(lines_result.success) and bool(totals_result.success),
        suite=f"{SUITE_NAME}@{SUITE_VERSION}",
        evaluated=len(lines_result.results) + len(totals_result.results),
        failed=failed,
        data_docs_index=index if index.exists() else None,
        seconds=time.perf_counter() - started,
    )
