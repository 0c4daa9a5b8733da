"""The day's FX reference rates: euro reference rates in the ECB's XML format, over HTTP or a file.

The European Central Bank publishes, once per working day, how many units of about 30 currencies
one euro buys (`eurofxref-daily.xml`). Any provider speaking that format will do (a mirror, an
internal rates service, the fake one in tests). Pairs without the euro are cross rates through it:
target per source = (target per EUR) / (source per EUR).

What leaves this module is a `RateTable`: plain, immutable, picklable (Prefect caches it) and
serialisable to JSON (a payroll run stores the table it used, and a re-run of that run converts
with the stored table, never with fresh rates).

Failures come in two kinds, because the Prefect task around `fetch_rates` retries one and not the
other: `RatesUnavailable` (connection refused, timeout, 5xx, 429: the same request may work in a
minute) and `RatesRefused` (4xx, a body that is not a well-formed rates file: asking again gets the
same answer). `daily_rates` makes one attempt at the provider, then falls back to the configured
rates file; retries with backoff are the task's job.

No Prefect and no FastAPI here: this is domain code (see README, Layout).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from quire.errors import Invalid
from quire.money import UnknownCurrency, validate_currency
from quire.payroll.errors import RatesError, RatesRefused, RatesUnavailable
from quire.settings import Settings

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_RESPONSE_BYTES",
    "RATE_SIGNIFICANT_DIGITS",
    "RETIRED_ECB_CURRENCIES",
    "RateTable",
    "RatesError",
    "RatesRefused",
    "RatesUnavailable",
    "cache_key",
    "daily_rates",
    "fetch_rates",
    "is_retryable",
    "load_rates_file",
    "parse_ecb_xml",
]

log = logging.getLogger("quire.payroll.fx_rates")

# A pair's rate is rounded to this many significant digits, half-even, once, when it is taken from
# the table. The rate is stored as text with the run and its lines, and converting again later must
# give the same minor units: so the number used is the short, stored one, not a 50-digit quotient
# whose last digits depend on how it was computed. Ten digits is far finer than the ECB's own five
# significant digits and than any payout's minor unit (an error of 1e-10 relative moves a payout of
# 10^13 minor units, MAX_AMOUNT_MINOR, by at most 1000 minor units; real payouts by nothing), and
# tiny cross rates (JPY -> KWD, about 0.0019) keep all ten, since the digits are significant ones,
# not decimal places.
RATE_SIGNIFICANT_DIGITS = 10
# Cross rates are first computed at this precision, then rounded as above.
_WORKING_PRECISION = 50
_RATE_CONTEXT = Context(prec=RATE_SIGNIFICANT_DIGITS, rounding=ROUND_HALF_EVEN)

# The daily file is about 1.5 KiB and the 90-day history about 70 KiB; anything past 1 MiB from an
# HTTP provider is not a rates file (or is an attack on the parser) and is refused unread.
MAX_RESPONSE_BYTES = 1024 * 1024
# A local fallback file is what operations put there; the ECB's full history (since 1999) is a few
# MiB, so a local file may be larger than a response.
MAX_FILE_BYTES = 16 * 1024 * 1024

USER_AGENT = "Quire/0.1 (payroll FX reference rates; httpx)"
BASE = "EUR"
_GESMES = "http://www.gesmes.org/xml/2002-08-01"
_EUROFXREF = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
_ENVELOPE = f"{{{_GESMES}}}Envelope"
_CUBE = f"{{{_EUROFXREF}}}Cube"
# The ECB writes plain decimals ("1.0705", "171.94", "17487.21"). Nothing else is a rate: no sign,
# exponent, NaN, Infinity, underscores or spaces, all of which Decimal() would otherwise accept.
_RATE_TEXT = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,15})?$")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Worth retrying besides 5xx: request timeout, too early, rate limited.
_TRANSIENT_STATUS = frozenset({408, 425, 429})
_LABEL_LENGTH = 120  # PayrollLine.rate_source is a String(120)
# Currencies the ECB has published that ISO 4217 has since withdrawn (replaced by the euro, or
# redenominated). A file that still rates one (BGN until the end of 2025) is not malformed: the
# rate is skipped, since no money can be held in it, and the other currencies are read. Any other
# code outside the ISO 4217 list refuses the file.
RETIRED_ECB_CURRENCIES = frozenset(
    {"BGN", "CYP", "EEK", "HRK", "LTL", "LVL", "MTL", "ROL", "SIT", "SKK", "TRL"}
)


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying the download may help: for a Prefect task's `retry_condition_fn`."""
    if isinstance(exc, RatesError):
        return exc.retryable
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol)


# --- the table --------------------------------------------------------------------------------


def _invalid_table(message: str) -> Invalid:
    return Invalid(f"invalid FX rate table: {message}", code="invalid_rate_table")


def _unknown(code: str) -> Invalid:
    return Invalid(
        f"no FX rate for {code!r} in the rate table", code="unknown_currency", currency=code
    )


@dataclass(frozen=True)
class RateTable:
    """One day's reference rates: units of each currency per 1 EUR (EUR itself is 1).

    Immutable and hashable; `per_eur` is a plain dict sorted by code (so it pickles, for Prefect's
    cache, and compares equal to the same table read back from JSON).
    """

    provider: str
    rate_date: date
    per_eur: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        if not isinstance(self.provider, str) or not self.provider.strip():
            raise _invalid_table("the provider is a non-empty string")
        if type(self.rate_date) is not date:  # a datetime would not survive to_json/from_json
            raise _invalid_table("the rate date is a date (not a datetime)")
        rates: dict[str, Decimal] = {}
        for code, rate in self.per_eur.items():
            try:
                validate_currency(code)
            except UnknownCurrency as exc:
                raise _invalid_table(str(exc)) from None
            if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
                raise _invalid_table(f"the rate of {code} is not a positive, finite Decimal")
            rates[code] = rate
        if rates.setdefault(BASE, Decimal(1)) != 1:
            raise _invalid_table(f"{BASE} is the base: its rate is 1, not {rates[BASE]}")
        object.__setattr__(self, "per_eur", dict(sorted(rates.items())))

    def __hash__(self) -> int:
        return hash((self.provider, self.rate_date, tuple(self.per_eur.items())))

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self.per_eur)

    def rate(self, source: str, target: str) -> Decimal:
        """Units of `target` per 1 `source`, through EUR, rounded half-even to
        RATE_SIGNIFICANT_DIGITS significant digits. A currency to itself is 1 (even one the
        table does not list: nothing is converted). Unknown currency: Invalid, `unknown_currency`.
        """
        for code in (source, target):
            try:
                validate_currency(code)
            except UnknownCurrency:
                raise _unknown(code) from None
        if source == target:
            return Decimal(1)
        for code in (source, target):
            if code not in self.per_eur:
                raise _unknown(code)
        with localcontext() as ctx:
            ctx.prec = _WORKING_PRECISION
            quotient = self.per_eur[target] / self.per_eur[source]
        return _RATE_CONTEXT.plus(quotient)

    def source_label(self, source: str, target: str) -> str:
        """Where a pair's rate comes from, for a line's `rate_source` (at most 120 characters):
        "www.ecb.europa.eu 2026-11-30 via EUR" for a cross rate, without "via EUR" when one side
        is the euro."""
        if source == target:
            return "same currency"
        suffix = f" {self.rate_date.isoformat()}"
        if BASE not in (source, target):
            suffix += f" via {BASE}"
        provider = self.provider
        room = _LABEL_LENGTH - len(suffix)
        if len(provider) > room:
            provider = provider[: room - 3] + "..."
        return provider + suffix

    def to_json(self) -> dict[str, Any]:
        """What a run stores: the rates as the provider's own decimal text, so nothing is lost."""
        return {
            "provider": self.provider,
            "rate_date": self.rate_date.isoformat(),
            "base": BASE,
            "rates": {code: str(rate) for code, rate in self.per_eur.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> RateTable:
        """The table `to_json` wrote, read back exactly; anything else is Invalid
        (`invalid_rate_table`): a run must not convert with rates it cannot trust."""
        if not isinstance(data, Mapping):
            raise _invalid_table("expected an object")
        expected = {"provider", "rate_date", "base", "rates"}
        if set(data) != expected:
            raise _invalid_table(f"expected exactly the keys {sorted(expected)}")
        if data["base"] != BASE:
            raise _invalid_table(f"the base is {BASE}, not {data['base']!r}")
        raw_date = data["rate_date"]
        if not isinstance(raw_date, str) or not _ISO_DATE.match(raw_date):
            raise _invalid_table("rate_date is an ISO date (YYYY-MM-DD)")
        try:
            rate_date = date.fromisoformat(raw_date)
        except ValueError:
            raise _invalid_table(f"rate_date {raw_date!r} is not a date") from None
        rates = data["rates"]
        if not isinstance(rates, Mapping) or not rates:
            raise _invalid_table("rates is a non-empty object")
        per_eur: dict[str, Decimal] = {}
        for code, text in rates.items():
            if not isinstance(code, str) or not isinstance(text, str):
                raise _invalid_table("rates map currency codes to decimal strings")
            per_eur[code] = _decimal(text, _invalid_table, code)
        return cls(provider=data["provider"], rate_date=rate_date, per_eur=per_eur)


def _decimal(text: str, fail: Callable[[str], Exception], code: str) -> Decimal:
    """A rate written as a plain positive decimal ("1.0705"), or `fail(message)` is raised."""
    if not _RATE_TEXT.match(text):
        raise fail(f"the rate of {code} is not a plain decimal number: {text[:40]!r}")
    try:
        rate = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise fail(f"the rate of {code} is not a number: {text[:40]!r}") from None
    if rate <= 0:
        raise fail(f"the rate of {code} is {text}: a rate is positive")
    return rate


# --- the ECB format ---------------------------------------------------------------------------


def parse_ecb_xml(content: bytes, provider: str) -> RateTable:
    """The rates of the latest day in an ECB euro reference-rate file.

        <gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
                         xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
          <gesmes:subject>Reference rates</gesmes:subject>
          <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
          <Cube>
            <Cube time="2024-06-28">
              <Cube currency="USD" rate="1.0705"/> ...

    One day (`eurofxref-daily.xml`) or several (`eurofxref-hist-90d.xml`, newest first; the order
    is not relied on). Only the latest day's rates are read and checked: older days of a history
    file may name currencies since retired (HRK until 2023), which must not refuse today's rates.
    A currency the ECB once published and ISO 4217 has since withdrawn (RETIRED_ECB_CURRENCIES,
    e.g. BGN) is skipped; any other code outside ISO 4217 refuses the file.
    Parsed with defusedxml, DTDs forbidden: no entity expansion, no external references.
    Anything else is RatesRefused, naming what is wrong.
    """

    def refuse(message: str) -> RatesRefused:
        return RatesRefused(f"{provider}: not an ECB reference-rate file: {message}")

    try:
        root = fromstring(content, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise refuse(f"not well-formed XML ({type(exc).__name__}: {exc})") from None
    if root.tag != _ENVELOPE:
        raise refuse(f"the root element is {root.tag}, not gesmes:Envelope")
    outer = root.findall(_CUBE)
    if len(outer) != 1:
        raise refuse(f"expected one Cube under the envelope, found {len(outer)}")
    days: dict[date, Element] = {}
    for cube in outer[0].findall(_CUBE):
        raw = cube.get("time")
        if raw is None:
            continue
        if not _ISO_DATE.match(raw):
            raise refuse(f"Cube time={raw[:40]!r} is not an ISO date")
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise refuse(f"Cube time={raw!r} is not a date") from None
        if day in days:
            raise refuse(f"the day {raw} appears twice")
        days[day] = cube
    if not days:
        raise refuse("no Cube with a time (no day of rates)")
    latest = max(days)
    per_eur = _day_rates(days[latest], refuse)
    return RateTable(provider=provider, rate_date=latest, per_eur=per_eur)


def _day_rates(day: Element, refuse: Callable[[str], Exception]) -> dict[str, Decimal]:
    """One day's <Cube currency=... rate=...> elements, strictly checked."""
    rates: dict[str, Decimal] = {}
    skipped: set[str] = set()
    for cube in day:
        if cube.tag != _CUBE:
            continue
        code, text = cube.get("currency"), cube.get("rate")
        if code is None or text is None:
            raise refuse(f"a rate Cube without currency or rate: {dict(cube.attrib)!r:.80}")
        try:
            validate_currency(code)
        except UnknownCurrency as exc:
            if code in RETIRED_ECB_CURRENCIES:
                skipped.add(code)
                continue
            raise refuse(str(exc)) from None
        if code in rates:
            raise refuse(f"{code} is rated twice on {day.get('time')}")
        rate = _decimal(text, refuse, code)
        if code == BASE and rate != 1:
            raise refuse(f"{BASE} is the base currency; it cannot be rated {text}")
        rates[code] = rate
    if not rates:
        raise refuse(f"the day {day.get('time')} has no rates")
    if skipped:
        log.info("FX rates: skipped withdrawn currencies %s", ", ".join(sorted(skipped)))
    return rates


# --- where the rates come from ----------------------------------------------------------------


def _provider_name(url: str) -> str:
    """The host (and port, if any) of a provider URL: short, and enough to say whose rates."""
    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[2] or url


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def fetch_rates(url: str, *, timeout: float, client: httpx.Client | None = None) -> RateTable:
    """The provider's current rates: one GET (redirects followed), at most MAX_RESPONSE_BYTES.

    `timeout` bounds each connect and read and the whole exchange. `client` (optional) is reused
    for its connection pool and transport; this request sets its own timeout, redirects and
    User-Agent. Raises RatesUnavailable (retry) or RatesRefused (don't).
    """
    if client is None:
        with httpx.Client() as own:
            return fetch_rates(url, timeout=timeout, client=own)
    provider = _provider_name(url)
    started = time.monotonic()
    try:
        with client.stream(
            "GET",
            url,
            timeout=timeout,
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT, "Accept": "application/xml, text/xml"},
        ) as response:
            status = response.status_code
            if status in _TRANSIENT_STATUS or status >= 500:
                raise RatesUnavailable(
                    f"FX rates provider {url} answered {status} {response.reason_phrase}",
                    retry_after=_retry_after(response),
                    provider=provider,
                    http_status=status,
                )
            if status != 200:
                raise RatesRefused(
                    f"FX rates provider {url} refused the request with {status} "
                    f"{response.reason_phrase}",
                    provider=provider,
                    http_status=status,
                )
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                raise _too_large(url, provider)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise _too_large(url, provider)
                if time.monotonic() - started > timeout:
                    raise RatesUnavailable(
                        f"FX rates provider {url} did not finish answering within {timeout:g} s",
                        provider=provider,
                    )
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise RatesRefused(
            f"FX rates provider URL {url!r} is not a usable http(s) URL: {exc}", provider=provider
        ) from exc
    except httpx.TooManyRedirects as exc:
        raise RatesRefused(f"FX rates provider {url}: {exc}", provider=provider) from exc
    except httpx.DecodingError as exc:
        raise RatesRefused(
            f"FX rates provider {url} sent a body that cannot be decoded: {exc}", provider=provider
        ) from exc
    except httpx.TransportError as exc:
        raise RatesUnavailable(
            f"FX rates provider {url} unreachable: {type(exc).__name__}: {exc}", provider=provider
        ) from exc
    return parse_ecb_xml(bytes(body), provider)


def _too_large(url: str, provider: str) -> RatesRefused:
    return RatesRefused(
        f"FX rates provider {url} sent more than {MAX_RESPONSE_BYTES} bytes: not a rates file",
        provider=provider,
    )


def load_rates_file(path: Path) -> RateTable:
    """A rates file on disk in the same ECB format; its provider is "file:<file name>".

    A missing, unreadable, oversized or malformed file is RatesRefused: waiting does not fix it.
    """
    path = Path(path)
    provider = f"file:{path.name}"
    try:
        with path.open("rb") as handle:
            content = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RatesRefused(
            f"FX rates file {path} cannot be read: {exc.strerror or exc}", provider=provider
        ) from None
    if len(content) > MAX_FILE_BYTES:
        raise RatesRefused(
            f"FX rates file {path} is larger than {MAX_FILE_BYTES} bytes", provider=provider
        )
    return parse_ecb_xml(content, provider)


def daily_rates(settings: Settings, *, client: httpx.Client | None = None) -> RateTable:
    """Today's rates: one attempt at the configured provider, else the fallback file.

    The fallback is used only when the provider is unavailable (RatesUnavailable) or no provider
    URL is configured; a provider that answers nonsense (RatesRefused) is not papered over with
    older rates. Provider down and no usable file: RatesUnavailable, saying both.
    """
    url = settings.fx_rates_url.strip()
    fallback = settings.fx_rates_fallback_file.strip()
    if not url and not fallback:
        raise RatesRefused(
            "no FX rates provider configured: set QUIRE_FX_RATES_URL or QUIRE_FX_RATES_FILE"
        )
    if not url:
        return load_rates_file(Path(fallback))
    try:
        return fetch_rates(url, timeout=settings.fx_timeout_seconds, client=client)
    except RatesUnavailable as provider_down:
        if not fallback:
            raise RatesUnavailable(
                f"{provider_down.message}; no fallback rates file configured",
                retry_after=provider_down.retry_after,
                **provider_down.details,
            ) from provider_down
        try:
            table = load_rates_file(Path(fallback))
        except RatesRefused as file_bad:
            raise RatesUnavailable(
                f"{provider_down.message}; the fallback failed too: {file_bad.message}",
                retry_after=provider_down.retry_after,
                **provider_down.details,
            ) from provider_down
        log.warning(
            "FX rates provider unavailable (%s); using the fallback file %s dated %s",
            provider_down.message,
            fallback,
            table.rate_date.isoformat(),
        )
        return table


def cache_key(settings: Settings, day: date) -> str:
    """The Prefect cache key of `day`'s rates: the configured source (provider URL, else the
    fallback file's path) and the ISO date. Prefect's local result storage uses the key as a file
    name, so the source appears as a readable, file-name-safe label plus a digest of the whole:
    "fx-rates-2026-11-30-www.ecb.europa.eu-3f2a9c0d1b4e5f60"."""
    url = settings.fx_rates_url.strip()
    source = url or f"file:{settings.fx_rates_fallback_file.strip()}"
    label = _provider_name(url) if url else Path(settings.fx_rates_fallback_file.strip()).name
    label = re.sub(r"[^A-Za-z0-9.-]+", "_", label)[:40] or "none"
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return f"fx-rates-{day.isoformat()}-{label}-{digest}"
