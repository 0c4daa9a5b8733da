"""FX reference rates in the ECB's format: parsing, cross rates, storage, and the provider over HTTP
(a fake ECB on a real socket) with its fallback file."""

from __future__ import annotations

import json
import pickle
import re
import time
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.fx import convert_minor
from quire.errors import Invalid, Unavailable
from quire.payroll.errors import RatesRefused, RatesUnavailable
from quire.payroll.fx_rates import (
    MAX_RESPONSE_BYTES,
    RATE_SIGNIFICANT_DIGITS,
    USER_AGENT,
    RateTable,
    cache_key,
    daily_rates,
    fetch_rates,
    is_retryable,
    load_rates_file,
    parse_ecb_xml,
)
from quire.settings import Settings
from tests.support.fake_ecb import ECB_2024_06_28, FakeEcb, ecb_daily_xml, running_fake_ecb

DATA = Path(__file__).parent / "data"
DAILY_FILE = DATA / "eurofxref-daily.xml"
HISTORY_FILE = DATA / "eurofxref-hist-sample.xml"
KWD_PER_EUR = "0.3285"

ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
    'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
    "<gesmes:subject>Reference rates</gesmes:subject>\n{cubes}\n</gesmes:Envelope>\n"
)


def ecb(cubes: str) -> bytes:
    """An ECB envelope around `cubes` (the outer Cube and what it holds)."""
    return ENVELOPE.format(cubes=cubes).encode()


def one_day(rates: str, day: str = "2024-06-28") -> bytes:
    return ecb(f"<Cube><Cube time='{day}'>{rates}</Cube></Cube>")


def table(**rates: str) -> RateTable:
    return RateTable(
        provider="ecb",
        rate_date=date(2024, 6, 28),
        per_eur={code: Decimal(rate) for code, rate in rates.items()},
    )


TABLE = table(USD="1.0705", JPY="171.94", GBP="0.84638", CHF="0.9634", KWD=KWD_PER_EUR)


def settings(url: str = "", fallback: Path | str = "", timeout: float = 2.0) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        QUIRE_FX_RATES_URL=url,
        QUIRE_FX_RATES_FILE=str(fallback),
        QUIRE_FX_TIMEOUT_SECONDS=timeout,
    )


@pytest.fixture
def fake_ecb() -> Iterator[FakeEcb]:
    with running_fake_ecb(extra_rates={"KWD": KWD_PER_EUR}) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


# --- the ECB format ---------------------------------------------------------------------------


def test_the_ecb_daily_file_gives_units_per_euro_for_each_currency_and_euro_itself_is_one():
    rates = parse_ecb_xml(DAILY_FILE.read_bytes(), "www.ecb.europa.eu")

    assert rates.provider == "www.ecb.europa.eu"
    assert rates.rate_date == date(2024, 6, 28)
    assert rates.per_eur["USD"] == Decimal("1.0705")
    assert rates.per_eur["JPY"] == Decimal("171.94")
    assert rates.per_eur["GBP"] == Decimal("0.84638")
    assert rates.per_eur["IDR"] == Decimal("17487.21")
    assert rates.per_eur["EUR"] == Decimal(1)
    # 30 published; BGN (withdrawn from ISO 4217 when Bulgaria took the euro) is skipped.
    assert "BGN" not in rates.per_eur
    assert len(rates.per_eur) == 30


def test_the_fake_ecb_serves_the_ecb_format_byte_for_byte():
    assert ecb_daily_xml(date(2024, 6, 28), ECB_2024_06_28) == DAILY_FILE.read_bytes()


def test_a_history_file_gives_its_latest_day_whatever_the_order_of_days():
    newest_first = HISTORY_FILE.read_bytes()
    rates = parse_ecb_xml(newest_first, "file:hist")
    assert rates.rate_date == date(2024, 6, 28)
    assert rates.per_eur["CHF"] == Decimal("0.9634")

    oldest_first = ecb(
        "<Cube><Cube time='2024-06-26'><Cube currency='USD' rate='1.0686'/></Cube>"
        "<Cube time='2024-06-28'><Cube currency='USD' rate='1.0705'/></Cube>"
        "<Cube time='2024-06-27'><Cube currency='USD' rate='1.0696'/></Cube></Cube>"
    )
    rates = parse_ecb_xml(oldest_first, "x")
    assert (rates.rate_date, rates.per_eur["USD"]) == (date(2024, 6, 28), Decimal("1.0705"))


def test_only_the_latest_day_of_a_history_is_checked_so_retired_old_codes_do_not_refuse_it():
    history = ecb(
        "<Cube><Cube time='2024-06-28'><Cube currency='USD' rate='1.0705'/></Cube>"
        "<Cube time='2001-01-02'><Cube currency='GRD' rate='340.75'/></Cube></Cube>"
    )
    assert parse_ecb_xml(history, "x").per_eur == {"EUR": 1, "USD": Decimal("1.0705")}


MALFORMED = {
    "empty": b"",
    "not xml": b"Service temporarily unavailable",
    "html page": b"<html><body><h1>Maintenance</h1></body></html>",
    "truncated": DAILY_FILE.read_bytes()[:400],
    "no namespace": (
        b"<Envelope><Cube><Cube time='2024-06-28'><Cube currency='USD' rate='1.07'/>"
        b"</Cube></Cube></Envelope>"
    ),
    "no outer cube": ecb(""),
    "two outer cubes": ecb("<Cube/><Cube/>"),
    "no cube with a time": ecb("<Cube><Cube><Cube currency='USD' rate='1.0705'/></Cube></Cube>"),
    "time not a date": one_day("<Cube currency='USD' rate='1.0705'/>", day="2024-13-45"),
    "time not iso": one_day("<Cube currency='USD' rate='1.0705'/>", day="28.06.2024"),
    "a day with no rates": one_day(""),
    "negative rate": one_day("<Cube currency='USD' rate='-1.0705'/>"),
    "zero rate": one_day("<Cube currency='USD' rate='0.0000'/>"),
    "nan rate": one_day("<Cube currency='USD' rate='NaN'/>"),
    "infinite rate": one_day("<Cube currency='USD' rate='Infinity'/>"),
    "exponent rate": one_day("<Cube currency='USD' rate='1.07E0'/>"),
    "rate with spaces": one_day("<Cube currency='USD' rate=' 1.0705'/>"),
    "rate with underscore": one_day("<Cube currency='JPY' rate='1_71.94'/>"),
    "empty rate": one_day("<Cube currency='USD' rate=''/>"),
    "missing rate": one_day("<Cube currency='USD'/>"),
    "missing currency": one_day("<Cube rate='1.0705'/>"),
    "unknown code": one_day("<Cube currency='XYZ' rate='1.5'/>"),
    "lower-case code": one_day("<Cube currency='usd' rate='1.0705'/>"),
    "a metal, not money": one_day("<Cube currency='XAU' rate='0.0005'/>"),
    "duplicate currency": one_day(
        "<Cube currency='USD' rate='1.0705'/><Cube currency='USD' rate='1.0800'/>"
    ),
    "duplicate day": ecb(
        "<Cube><Cube time='2024-06-28'><Cube currency='USD' rate='1.07'/></Cube>"
        "<Cube time='2024-06-28'><Cube currency='USD' rate='1.08'/></Cube></Cube>"
    ),
    "euro rated other than 1": one_day("<Cube currency='EUR' rate='1.1'/>"),
    "entity expansion": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        b'"&lol;&lol;&lol;&lol;">]><gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/'
        b'2002-08-01">&lol2;</gesmes:Envelope>'
    ),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01">&x;'
        b"</gesmes:Envelope>"
    ),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_anything_but_a_well_formed_rates_file_is_refused_and_not_retried(body):
    with pytest.raises(RatesRefused, match="not an ECB reference-rate file") as caught:
        parse_ecb_xml(body, "provider")
    assert not is_retryable(caught.value)


def test_a_refusal_says_what_is_wrong():
    with pytest.raises(RatesRefused, match="USD is rated twice on 2024-06-28"):
        parse_ecb_xml(MALFORMED["duplicate currency"], "p")
    with pytest.raises(RatesRefused, match="rate of USD is not a plain decimal number"):
        parse_ecb_xml(MALFORMED["negative rate"], "p")
    with pytest.raises(RatesRefused, match="'XYZ' is not an ISO 4217 currency code"):
        parse_ecb_xml(MALFORMED["unknown code"], "p")
    with pytest.raises(RatesRefused, match="no Cube with a time"):
        parse_ecb_xml(MALFORMED["no cube with a time"], "p")


# --- cross rates --------------------------------------------------------------------------------


def test_a_euro_pair_is_the_providers_own_rate_and_its_inverse_is_rounded_to_ten_digits():
    assert TABLE.rate("EUR", "USD") == Decimal("1.0705")
    assert TABLE.rate("USD", "EUR") == Decimal("0.9341429239")  # 1 / 1.0705 = 0.93414292386...


def test_a_cross_rate_goes_through_the_euro():
    # 171.94 JPY per EUR / 1.0705 USD per EUR = 160.61653432975... JPY per USD
    assert TABLE.rate("USD", "JPY") == Decimal("160.6165343")
    assert TABLE.rate("JPY", "USD") == Decimal("0.006226009073")


def test_tiny_cross_rates_keep_ten_significant_digits_not_ten_decimal_places():
    rate = TABLE.rate("JPY", "KWD")  # 0.3285 / 171.94 = 0.00191055019192...
    assert rate == Decimal("0.001910550192")
    digits = rate.as_tuple().digits
    assert len(digits) == RATE_SIGNIFICANT_DIGITS


def test_rates_are_rounded_half_even_at_the_tenth_significant_digit():
    tie = table(USD="1.0000000005", GBP="1.0000000015")
    assert tie.rate("EUR", "USD") == Decimal("1.000000000")  # down to the even digit
    assert tie.rate("EUR", "GBP") == Decimal("1.000000002")  # up to the even digit


def test_a_currency_to_itself_is_one_even_when_the_table_does_not_list_it():
    assert TABLE.rate("USD", "USD") == Decimal(1)
    assert TABLE.rate("EUR", "EUR") == Decimal(1)
    assert table(USD="1.0705").rate("KWD", "KWD") == Decimal(1)


@pytest.mark.parametrize(
    ("source", "target", "named"), [("USD", "THB", "THB"), ("SEK", "EUR", "SEK")]
)
def test_a_currency_the_table_does_not_rate_is_invalid_and_named(source, target, named):
    with pytest.raises(Invalid) as caught:
        TABLE.rate(source, target)
    assert caught.value.code == "unknown_currency"
    assert caught.value.details == {"currency": named}
    assert named in caught.value.message


@pytest.mark.parametrize("code", ["usd", "XYZ", "XAU", "", "USDX"])
def test_a_code_that_is_not_an_iso_currency_is_invalid_even_to_itself(code):
    with pytest.raises(Invalid) as caught:
        TABLE.rate(code, code)
    assert caught.value.code == "unknown_currency"


CURRENCIES = sorted(TABLE.per_eur)


@given(st.sampled_from(CURRENCIES), st.sampled_from(CURRENCIES))
def test_a_rate_and_its_reverse_multiply_to_one_within_the_rounding(source, target):
    product = TABLE.rate(source, target) * TABLE.rate(target, source)
    assert abs(product - 1) < Decimal("1e-9")


def test_converting_with_a_table_rate_gives_yen_without_decimals_and_dinars_with_three():
    usd_jpy = TABLE.rate("USD", "JPY")
    assert convert_minor(12_345, "USD", "JPY", usd_jpy) == 19_828  # 123.45 x 160.6165343
    jpy_kwd = TABLE.rate("JPY", "KWD")
    assert convert_minor(100_000, "JPY", "KWD", jpy_kwd) == 191_055  # 191.0550192 KWD
    assert convert_minor(1, "JPY", "KWD", jpy_kwd) == 2  # 1.91 fils, rounded
    kwd_jpy = TABLE.rate("KWD", "JPY")
    assert kwd_jpy == Decimal("523.4094368")
    assert convert_minor(1_234, "KWD", "JPY", kwd_jpy) == 646  # 1.234 KWD = 645.887 JPY


# --- the table as a run stores it ---------------------------------------------------------------


def test_a_table_survives_json_exactly_with_the_providers_decimal_text():
    stored = json.loads(json.dumps(TABLE.to_json()))
    assert stored == {
        "provider": "ecb",
        "rate_date": "2024-06-28",
        "base": "EUR",
        "rates": {
            "CHF": "0.9634",
            "EUR": "1",
            "GBP": "0.84638",
            "JPY": "171.94",
            "KWD": "0.3285",
            "USD": "1.0705",
        },
    }
    again = RateTable.from_json(stored)
    assert again == TABLE
    assert again.rate("JPY", "KWD") == TABLE.rate("JPY", "KWD")
    trailing = RateTable.from_json({**stored, "rates": {"HUF": "395.10"}})
    assert trailing.to_json()["rates"]["HUF"] == "395.10"


def good_json() -> dict[str, object]:
    return TABLE.to_json()


NOT_A_TABLE = {
    "not an object": [],
    "missing key": {k: v for k, v in good_json().items() if k != "base"},
    "extra key": {**good_json(), "fetched_at": "now"},
    "other base": {**good_json(), "base": "USD"},
    "date not iso": {**good_json(), "rate_date": "28/06/2024"},
    "date impossible": {**good_json(), "rate_date": "2024-02-30"},
    "date a number": {**good_json(), "rate_date": 20240628},
    "no rates": {**good_json(), "rates": {}},
    "rate a float": {**good_json(), "rates": {"USD": 1.0705}},
    "rate negative": {**good_json(), "rates": {"USD": "-1.0705"}},
    "rate zero": {**good_json(), "rates": {"USD": "0"}},
    "rate nan": {**good_json(), "rates": {"USD": "NaN"}},
    "rate exponent": {**good_json(), "rates": {"USD": "1E3"}},
    "unknown code": {**good_json(), "rates": {"XYZ": "1.5"}},
    "euro not one": {**good_json(), "rates": {"EUR": "1.1"}},
    "empty provider": {**good_json(), "provider": " "},
    "provider not text": {**good_json(), "provider": None},
}


@pytest.mark.parametrize("data", NOT_A_TABLE.values(), ids=NOT_A_TABLE.keys())
def test_a_stored_table_that_is_not_exactly_what_was_written_is_refused(data):
    with pytest.raises(Invalid) as caught:
        RateTable.from_json(data)
    assert caught.value.code == "invalid_rate_table"


def test_a_table_is_checked_when_made_in_code_too():
    with pytest.raises(Invalid, match="not a datetime"):
        RateTable("ecb", datetime(2024, 6, 28, 16, 0), {"USD": Decimal("1.0705")})
    with pytest.raises(Invalid, match="positive, finite Decimal"):
        RateTable("ecb", date(2024, 6, 28), {"USD": 1.0705})  # type: ignore[dict-item]
    with pytest.raises(Invalid, match="not an ISO 4217 currency code"):
        RateTable("ecb", date(2024, 6, 28), {"BGN": Decimal("1.9558")})


def test_a_table_pickles_and_hashes_for_prefects_cache():
    again = pickle.loads(pickle.dumps(TABLE))
    assert again == TABLE
    assert hash(again) == hash(TABLE)
    assert hash(table(USD="1.0705")) != hash(table(USD="1.0706"))


def test_the_rate_source_label_names_provider_day_and_the_route_and_fits_its_column():
    assert TABLE.source_label("USD", "JPY") == "ecb 2024-06-28 via EUR"
    assert TABLE.source_label("EUR", "USD") == "ecb 2024-06-28"
    assert TABLE.source_label("USD", "EUR") == "ecb 2024-06-28"
    assert TABLE.source_label("USD", "USD") == "same currency"
    long = RateTable("file:" + "x" * 200 + ".xml", date(2024, 6, 28), {"USD": Decimal(1)})
    label = long.source_label("USD", "JPY")
    assert len(label) == 120
    assert label.endswith("... 2024-06-28 via EUR")


# --- the provider over HTTP ----------------------------------------------------------------------


def test_the_providers_rates_are_fetched_over_http_with_a_quire_user_agent(fake_ecb, client):
    rates = fetch_rates(fake_ecb.daily_url, timeout=2, client=client)

    assert rates.provider == fake_ecb.provider  # 127.0.0.1:<port>
    assert rates.rate_date == date(2024, 6, 28)
    assert rates.per_eur["KWD"] == Decimal(KWD_PER_EUR)
    assert rates.rate("USD", "JPY") == Decimal("160.6165343")
    assert fake_ecb.request_count == 1
    assert fake_ecb.requests[0]["user_agent"] == USER_AGENT


def test_without_a_client_one_is_made_for_the_request(fake_ecb):
    fake_ecb.rate_date = date(2026, 11, 30)
    fake_ecb.set_rate("USD", "1.1000")
    rates = fetch_rates(fake_ecb.daily_url, timeout=2)
    assert (rates.rate_date, rates.per_eur["USD"]) == (date(2026, 11, 30), Decimal("1.1000"))


def test_redirects_are_followed(fake_ecb, client):
    rates = fetch_rates(f"{fake_ecb.url}/moved/eurofxref-daily.xml", timeout=2, client=client)
    assert rates.per_eur["USD"] == Decimal("1.0705")


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_an_overloaded_provider_is_unavailable_and_worth_retrying(fake_ecb, client, status):
    fake_ecb.fail_next(1, status=status, retry_after=7)
    with pytest.raises(RatesUnavailable, match=f"answered {status}") as caught:
        fetch_rates(fake_ecb.daily_url, timeout=2, client=client)
    assert is_retryable(caught.value)
    assert caught.value.retry_after == 7
    assert caught.value.details["http_status"] == status
    assert isinstance(caught.value, Unavailable)  # a 503 if it ever reaches the API
    assert fetch_rates(fake_ecb.daily_url, timeout=2, client=client).per_eur["USD"]  # recovered


def test_a_provider_slower_than_the_timeout_is_unavailable(fake_ecb, client):
    fake_ecb.delay_next(1, seconds=5)
    started = time.monotonic()
    with pytest.raises(RatesUnavailable, match="unreachable: ReadTimeout") as caught:
        fetch_rates(fake_ecb.daily_url, timeout=0.3, client=client)
    assert time.monotonic() - started < 3
    assert is_retryable(caught.value)


def test_a_provider_nobody_answers_at_is_unavailable(client):
    with FakeEcb() as server:
        url = server.daily_url
    with pytest.raises(RatesUnavailable, match="unreachable: ConnectError"):
        fetch_rates(url, timeout=2, client=client)


@pytest.mark.parametrize("status", [404, 403, 400, 410])
def test_a_provider_refusing_the_request_is_not_retried(fake_ecb, client, status):
    fake_ecb.fail_next(1, status=status)
    with pytest.raises(RatesRefused, match=f"refused the request with {status}") as caught:
        fetch_rates(fake_ecb.daily_url, timeout=2, client=client)
    assert not is_retryable(caught.value)


def test_a_wrong_path_is_a_404_refusal(fake_ecb, client):
    with pytest.raises(RatesRefused, match="404"):
        fetch_rates(f"{fake_ecb.url}/eurofxref-hourly.xml", timeout=2, client=client)


def test_a_malformed_answer_is_refused(fake_ecb, client):
    fake_ecb.malform_next(1)
    with pytest.raises(RatesRefused, match="not well-formed XML"):
        fetch_rates(fake_ecb.daily_url, timeout=2, client=client)
    fake_ecb.set_rate("USD", "-1.0705")
    with pytest.raises(RatesRefused, match="rate of USD"):
        fetch_rates(fake_ecb.daily_url, timeout=2, client=client)


def test_an_answer_past_the_size_cap_is_refused_unparsed(fake_ecb, client):
    fake_ecb.malform_next(1, body=b" " * (MAX_RESPONSE_BYTES + 1))
    with pytest.raises(RatesRefused, match="more than 1048576 bytes"):
        fetch_rates(fake_ecb.daily_url, timeout=2, client=client)


@pytest.mark.parametrize("url", ["ftp://example.org/rates.xml", "", "eurofxref-daily.xml"])
def test_a_url_that_is_not_http_is_refused(client, url):
    with pytest.raises(RatesRefused, match="not a usable http"):
        fetch_rates(url, timeout=2, client=client)


def test_raw_transport_errors_count_as_retryable_and_other_errors_do_not():
    assert is_retryable(httpx.ConnectError("refused"))
    assert is_retryable(httpx.ReadTimeout("slow"))
    assert not is_retryable(httpx.UnsupportedProtocol("ftp"))
    assert not is_retryable(ValueError("bug"))


# --- the fallback file and the day's rates --------------------------------------------------------


def test_a_rates_file_is_read_in_the_same_format_and_named_as_a_file():
    rates = load_rates_file(DAILY_FILE)
    assert rates.provider == "file:eurofxref-daily.xml"
    assert rates.per_eur["JPY"] == Decimal("171.94")
    assert rates.source_label("USD", "JPY") == "file:eurofxref-daily.xml 2024-06-28 via EUR"


def test_a_missing_rates_file_is_refused(tmp_path):
    with pytest.raises(RatesRefused, match="cannot be read"):
        load_rates_file(tmp_path / "nope.xml")


def test_the_providers_rates_are_used_when_it_answers(fake_ecb):
    rates = daily_rates(settings(fake_ecb.daily_url, fallback=DAILY_FILE))
    assert rates.provider == fake_ecb.provider
    assert "KWD" in rates.per_eur  # the fake's, not the file's


def test_the_fallback_file_is_used_when_the_provider_is_down_after_one_attempt(fake_ecb, client):
    fake_ecb.fail_next(5, status=503)
    rates = daily_rates(settings(fake_ecb.daily_url, fallback=DAILY_FILE), client=client)
    assert rates.provider == "file:eurofxref-daily.xml"
    assert fake_ecb.request_count == 1  # retrying is the Prefect task's job


def test_the_fallback_file_is_used_when_the_provider_times_out(fake_ecb):
    fake_ecb.delay_next(1, seconds=5)
    rates = daily_rates(settings(fake_ecb.daily_url, fallback=DAILY_FILE, timeout=0.3))
    assert rates.provider == "file:eurofxref-daily.xml"


def test_without_a_provider_url_the_file_is_the_source_and_nothing_is_requested(fake_ecb):
    rates = daily_rates(settings("", fallback=DAILY_FILE))
    assert rates.provider == "file:eurofxref-daily.xml"
    assert fake_ecb.request_count == 0


def test_a_provider_answering_nonsense_is_not_papered_over_with_the_file(fake_ecb):
    fake_ecb.malform_next(1)
    with pytest.raises(RatesRefused):
        daily_rates(settings(fake_ecb.daily_url, fallback=DAILY_FILE))
    fake_ecb.fail_next(1, status=404)
    with pytest.raises(RatesRefused):
        daily_rates(settings(fake_ecb.daily_url, fallback=DAILY_FILE))


def test_provider_down_and_no_fallback_is_unavailable_saying_so(fake_ecb):
    fake_ecb.fail_next(1, status=503, retry_after=30)
    with pytest.raises(RatesUnavailable, match=r"answered 503.*no fallback rates file") as caught:
        daily_rates(settings(fake_ecb.daily_url))
    assert caught.value.retry_after == 30


def test_provider_down_and_fallback_unusable_is_unavailable_saying_both(fake_ecb, tmp_path):
    broken = tmp_path / "rates.xml"
    broken.write_bytes(MALFORMED["truncated"])
    for fallback in (broken, tmp_path / "missing.xml"):
        fake_ecb.fail_next(1, status=503)
        with pytest.raises(
            RatesUnavailable, match=r"answered 503.*the fallback failed too: .*\.xml"
        ):
            daily_rates(settings(fake_ecb.daily_url, fallback=fallback))


def test_no_fallback_and_no_provider_is_refused_as_configuration():
    with pytest.raises(RatesRefused, match="no FX rates provider configured"):
        daily_rates(settings("", fallback=""))


def test_the_default_provider_is_the_ecb():
    assert Settings(_env_file=None).fx_rates_url.endswith("/stats/eurofxref/eurofxref-daily.xml")


def test_the_cache_key_is_the_provider_and_the_day_and_safe_as_a_file_name(tmp_path):
    ecb_settings = settings("https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml")
    key = cache_key(ecb_settings, date(2026, 11, 30))
    assert key.startswith("fx-rates-2026-11-30-www.ecb.europa.eu-")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key)
    assert key == cache_key(ecb_settings, date(2026, 11, 30))
    assert key != cache_key(ecb_settings, date(2026, 12, 1))
    mirror = settings("https://mirror.example/ecb/eurofxref-daily.xml")
    assert key != cache_key(mirror, date(2026, 11, 30))
    from_file = cache_key(settings("", fallback=tmp_path / "rates.xml"), date(2026, 11, 30))
    assert from_file.startswith("fx-rates-2026-11-30-rates.xml-")
