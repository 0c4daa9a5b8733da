"""Payroll periods: a month `YYYY-MM`, whose cutoff is the first instant of the next month in the
tenant's time zone (earnings effective before it are paid in this period's run)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.balances import PERIOD
from quire.errors import Invalid


def parse(period: str) -> tuple[int, int]:
    if not isinstance(period, str) or not PERIOD.fullmatch(period):
        raise Invalid(f"period {period!r} is not YYYY-MM", code="invalid_period")
    year, month = map(int, period.split("-"))
    if not 2000 <= year <= 2999:  # a payroll of another millennium is a typo, not a plan
        raise Invalid(f"period {period!r} is out of range", code="invalid_period")
    return year, month


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"{name!r} is not a time zone", code="invalid_time_zone") from None


def cutoff(period: str, time_zone: str = "UTC") -> dt.datetime:
    """The first instant after `period`, in `time_zone`, as a UTC datetime."""
    year, month = parse(period)
    local = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone(time_zone))
    return local.astimezone(dt.UTC)


def previous(today: dt.date) -> str:
    """The month before `today`'s: what a run on the 1st pays."""
    first = today.replace(day=1)
    last_month = first - dt.timedelta(days=1)
    return f"{last_month.year:04d}-{last_month.month:02d}"


def default_payout_date(period: str, time_zone: str = "UTC") -> dt.date:
    """The next banking day after the cutoff (Saturday and Sunday skipped)."""
    day = cutoff(period, time_zone).astimezone(zone(time_zone)).date()
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def compact(period: str) -> str:
    """`2026-11` -> `202611`, for identifiers with a tight length budget (ISO 20022 ids)."""
    year, month = parse(period)
    return f"{year:04d}{month:02d}"
