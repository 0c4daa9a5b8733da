"""The day's FX rates in a flow: retried while the provider is down, cached per provider and day,
and read from the fallback file when the provider stays down."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prefect import flow

from flows.payroll_run import todays_rates
from quire.settings import get_settings
from tests.support.fake_ecb import FakeEcb


@pytest.fixture
def provider(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEcb]:
    """A provider of its own (its own URL, so its own cache key), and quick retries."""
    with FakeEcb(extra_rates={"KWD": "0.3321"}) as server:
        monkeypatch.setenv("QUIRE_FX_RATES_URL", f"{server.daily_url}?t={uuid.uuid4().hex}")
        monkeypatch.setenv("QUIRE_FX_RETRY_BACKOFF_SECONDS", "0.05")
        get_settings.cache_clear()
        yield server
    get_settings.cache_clear()


@flow
def rates_flow() -> dict:
    return todays_rates()


def test_a_provider_down_for_a_while_is_retried_then_its_rates_are_used(provider):
    provider.fail_next(2, status=503)
    rates = rates_flow()
    assert provider.request_count == 3
    assert rates["rates"]["KWD"] == "0.3321"


def test_the_days_rates_are_cached_per_provider_and_day(provider):
    first = rates_flow()
    second = rates_flow()
    assert first == second
    assert provider.request_count == 1


def test_a_refusal_is_not_retried_and_the_fallback_file_is_read(provider, tmp_path, monkeypatch):
    fallback = tmp_path / "rates.xml"
    fallback.write_bytes(provider.document())
    monkeypatch.setenv("QUIRE_FX_RATES_FILE", str(fallback))
    get_settings.cache_clear()
    provider.malform_next(5)
    rates = rates_flow()
    assert provider.request_count == 1  # a malformed answer would be malformed again
    assert rates["provider"] == "file:rates.xml"
