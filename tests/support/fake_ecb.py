"""A fake ECB: a real HTTP server on 127.0.0.1 serving euro reference rates, for payroll's tests.

`GET /eurofxref-daily.xml` (also at the ECB's own path, `/stats/eurofxref/eurofxref-daily.xml`)
answers the day's rates in exactly the ECB's format: the gesmes envelope, one `Cube` holding one
`Cube time='YYYY-MM-DD'` holding a `Cube currency='USD' rate='1.0705'` per currency, tab-indented
with single-quoted attributes, as `text/xml`. `GET /moved/eurofxref-daily.xml` redirects there
(302). Any other path is 404. Because it is a real socket server, Prefect flow runs and subprocess
workers reach it like the real provider.

The ECB publishes about 30 currencies, KWD not among them; tests that need a currency with three
decimals (or any other) add it: `FakeEcb(extra_rates={"KWD": "0.3285"})` or `server.set_rate()`.

    with running_fake_ecb(rate_date=date(2026, 11, 30)) as ecb:
        ecb.set_rate("KWD", "0.3285")
        ecb.fail_next(2, status=503)     # the next two requests fail, then it recovers
        ecb.delay_next(1, seconds=5)     # the next one answers after 5 s (past a client timeout)
        ecb.malform_next(1)              # the next one gets a truncated document
        fetch_rates(ecb.daily_url, timeout=2)
        ecb.request_count                # requests so far, failed ones included

Standalone, for a worker in another process:
    python -m tests.support.fake_ecb --port 8011
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

# The ECB's reference rates of 28 June 2024 (units per 1 EUR), in its own order.
ECB_2024_06_28: Mapping[str, str] = {
    "USD": "1.0705",
    "JPY": "171.94",
    "BGN": "1.9558",
    "CZK": "25.025",
    "DKK": "7.4575",
    "GBP": "0.84638",
    "HUF": "395.10",
    "PLN": "4.3090",
    "RON": "4.9773",
    "SEK": "11.3595",
    "CHF": "0.9634",
    "ISK": "148.90",
    "NOK": "11.3965",
    "TRY": "35.1868",
    "AUD": "1.6079",
    "BRL": "5.8915",
    "CAD": "1.4670",
    "CNY": "7.7748",
    "HKD": "8.3594",
    "IDR": "17487.21",
    "ILS": "4.0200",
    "INR": "89.2495",
    "KRW": "1474.86",
    "MXN": "19.5654",
    "MYR": "5.0501",
    "NZD": "1.7601",
    "PHP": "62.560",
    "SGD": "1.4513",
    "THB": "39.319",
    "ZAR": "19.4970",
}
DEFAULT_DATE = date(2024, 6, 28)
DAILY_PATHS = frozenset({"/eurofxref-daily.xml", "/stats/eurofxref/eurofxref-daily.xml"})
MOVED_PATH = "/moved/eurofxref-daily.xml"
# What `malform_next` sends by default: a daily file cut off in the middle of a rate.
TRUNCATED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<gesmes:Envelope xmlns:gesmes='
    b'"http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/'
    b"eurofxref\">\n\t<Cube>\n\t\t<Cube time='2024-06-28'>\n\t\t\t<Cube currency='USD' rate='1.07"
)


def ecb_daily_xml(rate_date: date, rates: Mapping[str, Any]) -> bytes:
    """`rates` as the ECB writes eurofxref-daily.xml (values written as given, unchecked)."""
    lines = "".join(
        f"\t\t\t<Cube currency='{code}' rate='{rate}'/>\n" for code, rate in rates.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
        'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
        "\t<gesmes:subject>Reference rates</gesmes:subject>\n"
        "\t<gesmes:Sender>\n"
        "\t\t<gesmes:name>European Central Bank</gesmes:name>\n"
        "\t</gesmes:Sender>\n"
        "\t<Cube>\n"
        f"\t\t<Cube time='{rate_date.isoformat()}'>\n"
        f"{lines}"
        "\t\t</Cube>\n"
        "\t</Cube>\n"
        "</gesmes:Envelope>\n"
    ).encode()


@dataclass
class _Fault:
    status: int = 200
    delay: float = 0.0
    body: bytes | None = None
    retry_after: float | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout tests) closes its socket mid-answer: not news


class FakeEcb:
    """The fake provider and its controls. Start with `with` (or start()/stop())."""

    def __init__(
        self,
        *,
        rates: Mapping[str, Any] = ECB_2024_06_28,
        extra_rates: Mapping[str, Any] | None = None,
        rate_date: date = DEFAULT_DATE,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._rates: dict[str, str] = {code: str(rate) for code, rate in rates.items()}
        self._rates.update({code: str(rate) for code, rate in (extra_rates or {}).items()})
        self._rate_date = rate_date
        self._faults: list[_Fault] = []
        self._requests: list[dict[str, str]] = []
        self._stopping = threading.Event()
        self._server = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def daily_url(self) -> str:
        """Where the daily file is: what QUIRE_FX_RATES_URL points at."""
        return f"{self.url}/eurofxref-daily.xml"

    @property
    def provider(self) -> str:
        """The provider name a table fetched from here carries (host:port)."""
        return urlsplit(self.url).netloc

    def start(self) -> FakeEcb:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # so that stop() returns at once
                name="fake-ecb",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed answers, so nothing outlives the server for long
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeEcb:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- controls for tests -------------------------------------------------------------------

    @property
    def rate_date(self) -> date:
        with self._lock:
            return self._rate_date

    @rate_date.setter
    def rate_date(self, value: date) -> None:
        with self._lock:
            self._rate_date = value

    @property
    def rates(self) -> dict[str, str]:
        """The rates served (code -> the text written in the file), in file order."""
        with self._lock:
            return dict(self._rates)

    def set_rate(self, code: str, rate: Decimal | str) -> None:
        """Add or change one currency's rate (written verbatim: "-1" and "abc" too)."""
        with self._lock:
            self._rates[code] = str(rate)

    def set_rates(self, rates: Mapping[str, Decimal | str], *, replace: bool = False) -> None:
        """Change several rates; `replace=True` serves exactly these and no others."""
        with self._lock:
            if replace:
                self._rates.clear()
            self._rates.update({code: str(rate) for code, rate in rates.items()})

    def remove_rate(self, code: str) -> None:
        with self._lock:
            self._rates.pop(code, None)

    def fail_next(self, n: int = 1, status: int = 503, *, retry_after: float | None = None) -> None:
        """The next `n` requests get `status` (a transient 503 by default; 404, 429 ...)."""
        with self._lock:
            self._faults += [_Fault(status=status, retry_after=retry_after) for _ in range(n)]

    def delay_next(self, n: int = 1, seconds: float = 5.0) -> None:
        """The next `n` requests are answered (normally) only after `seconds`, or at stop()."""
        with self._lock:
            self._faults += [_Fault(delay=seconds) for _ in range(n)]

    def malform_next(self, n: int = 1, body: bytes = TRUNCATED) -> None:
        """The next `n` requests get 200 with `body` (a truncated document by default)."""
        with self._lock:
            self._faults += [_Fault(body=body) for _ in range(n)]

    @property
    def request_count(self) -> int:
        """Requests received on the daily file's paths, failed and delayed ones included."""
        with self._lock:
            return len(self._requests)

    @property
    def requests(self) -> list[dict[str, str]]:
        """Each of those requests' path and User-Agent, in order."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._requests.clear()

    def document(self) -> bytes:
        """The daily file as served right now."""
        with self._lock:
            return ecb_daily_xml(self._rate_date, self._rates)

    # --- serving ------------------------------------------------------------------------------

    def _answer(self, path: str, user_agent: str) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self._requests.append({"path": path, "user_agent": user_agent})
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.status != 200:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                return fault.status, f"simulated failure ({fault.status})".encode(), headers
            if fault.body is not None:
                return 200, fault.body, {}
        return 200, self.document(), {}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "FakeECB/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _reply(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
                self.send_response(status)
                kind = "text/xml" if status == 200 else "text/plain; charset=utf-8"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == MOVED_PATH:
                    self._reply(302, b"", {"Location": "/eurofxref-daily.xml"})
                    return
                if path not in DAILY_PATHS:
                    self._reply(404, b"Not Found", {})
                    return
                self._reply(*fake._answer(path, self.headers.get("User-Agent", "")))

        return Handler


@contextlib.contextmanager
def running_fake_ecb(**options: Any) -> Iterator[FakeEcb]:
    """A started FakeEcb (options as FakeEcb's), stopped on exit."""
    with FakeEcb(**options) as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--date", type=date.fromisoformat, default=DEFAULT_DATE)
    parser.add_argument(
        "--rate", action="append", default=[], metavar="CCY=RATE", help="add or change a rate"
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.rate)
    with FakeEcb(host=args.host, port=args.port, rate_date=args.date, extra_rates=extra) as ecb:
        print(f"fake ECB at {ecb.daily_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
