"""A fake LanguageTool server: a real HTTP server on 127.0.0.1, for the grammar check's tests.

It speaks the part of the LanguageTool HTTP API that Quire uses (`POST /v2/check` with form fields
`text` and `language`, answering `{"matches": [...]}` with offsets in UTF-16 units as the Java
server does, 400 for a missing parameter, 413 past `max_text_chars`), and flags two things:
a word repeated ("the the", rule ENGLISH_WORD_REPEAT_RULE) and any word of `misspellings`
(rule MORFOLOGIK_RULE_EN_US). Because it is a real socket server, Prefect flow runs and
subprocess workers can reach it like the real service.

    with FakeLanguageTool() as server:
        server.fail_next(2, status=503)     # the next two requests fail, then it recovers
        check_grammar(client, server.url, text, 5.0)
        server.request_count                # requests to /v2/check so far (failed ones too)

Standalone, for a worker in another process:
    python -m tests.support.fake_languagetool --port 8010
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_MISSPELLINGS: Mapping[str, str] = {
    "teh": "the",
    "recieve": "receive",
    "seperate": "separate",
    "definately": "definitely",
}
_REPEAT = re.compile(r"\b(\w+)(\s+)(\1)\b", re.IGNORECASE)
_LANGUAGE = re.compile(r"^(auto|[a-z]{2,3}(-[A-Z]{2})?)$")


@dataclass
class _Fault:
    status: int
    delay: float
    retry_after: float | None


def _utf16(text: str, index: int) -> int:
    """Java's string index (UTF-16 units) of Python index `index`."""
    return len(text[:index].encode("utf-16-le")) // 2


def _match(
    text: str, start: int, end: int, message: str, rule: str, issue: str, fix: str
) -> dict[str, Any]:
    offset, length = _utf16(text, start), _utf16(text, end) - _utf16(text, start)
    context_start = max(0, start - 40)
    return {
        "message": message,
        "shortMessage": "",
        "replacements": [{"value": fix}],
        "offset": offset,
        "length": length,
        "context": {
            "text": text[context_start : end + 40],
            "offset": start - context_start,
            "length": end - start,
        },
        "sentence": text[max(0, start - 80) : end + 80],
        "rule": {
            "id": rule,
            "description": message,
            "issueType": issue,
            "category": {"id": "TYPOS", "name": "Possible Typo"},
        },
    }


def find_matches(text: str, misspellings: Mapping[str, str]) -> list[dict[str, Any]]:
    """What the fake flags in `text`, in LanguageTool's match format, in text order."""
    found = [
        _match(
            text,
            m.start(),
            m.end(),
            "Possible typo: you repeated a word.",
            "ENGLISH_WORD_REPEAT_RULE",
            "duplication",
            m.group(1),
        )
        for m in _REPEAT.finditer(text)
    ]
    if misspellings:
        words = "|".join(re.escape(word) for word in misspellings)
        for m in re.finditer(rf"\b({words})\b", text, re.IGNORECASE):
            found.append(
                _match(
                    text,
                    m.start(),
                    m.end(),
                    "Possible spelling mistake found.",
                    "MORFOLOGIK_RULE_EN_US",
                    "misspelling",
                    misspellings[m.group(1).lower()],
                )
            )
    return sorted(found, key=lambda match: match["offset"])


class FakeLanguageTool:
    """The fake service and its controls. Start with `with` (or start()/stop())."""

    def __init__(
        self,
        *,
        misspellings: Mapping[str, str] = DEFAULT_MISSPELLINGS,
        max_text_chars: int = 20_000,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.misspellings = {word.lower(): fix for word, fix in misspellings.items()}
        self.max_text_chars = max_text_chars
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._texts: list[str] = []
        self._requests = 0
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeLanguageTool:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # so that stop() returns at once
                name="fake-languagetool",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeLanguageTool:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- controls for tests -------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503, *, retry_after: float | None = None) -> None:
        """The next `n` check requests get `status` (a transient 503 by default) and no matches."""
        with self._lock:
            self._faults += [_Fault(status, 0.0, retry_after) for _ in range(n)]

    def delay_next(self, n: int = 1, seconds: float = 5.0) -> None:
        """The next `n` check requests are answered (normally) only after `seconds`."""
        with self._lock:
            self._faults += [_Fault(200, seconds, None) for _ in range(n)]

    @property
    def request_count(self) -> int:
        """Requests received on /v2/check, failed and delayed ones included."""
        with self._lock:
            return self._requests

    @property
    def texts(self) -> list[str]:
        """The `text` of every check request received, in order."""
        with self._lock:
            return list(self._texts)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._texts.clear()
            self._requests = 0

    # --- serving ------------------------------------------------------------------------------

    def _next_fault(self, text: str) -> _Fault | None:
        with self._lock:
            self._requests += 1
            self._texts.append(text)
            return self._faults.pop(0) if self._faults else None

    def _check(self, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """(status, body, headers) for one /v2/check request, as LanguageTool would answer."""
        text = form.get("text")
        fault = self._next_fault(text or "")
        if fault is not None:
            time.sleep(fault.delay)
            if fault.status != 200:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                return fault.status, f"Error: simulated failure ({fault.status})", headers
        language = form.get("language")
        if text is None or language is None:
            return 400, "Error: Missing 'text' or 'data' parameter, or 'language'", {}
        if not _LANGUAGE.match(language):
            return 400, f"Error: '{language}' is not a language code known to LanguageTool.", {}
        if len(text) > self.max_text_chars:
            return (
                413,
                f"Error: Your text exceeds the limit of {self.max_text_chars} characters "
                f"(it's {len(text)} characters). Please submit a shorter text.",
                {},
            )
        body = {
            "software": {"name": "LanguageTool", "version": "fake", "apiVersion": 1},
            "language": {"name": language, "code": language},
            "matches": find_matches(text, self.misspellings),
        }
        return 200, body, {}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "FakeLanguageTool/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _reply(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
                is_json = not isinstance(body, str)
                payload = (json.dumps(body) if is_json else body).encode()
                self.send_response(status)
                kind = "application/json" if is_json else "text/plain; charset=utf-8"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8") if length else ""
                parts = urlsplit(self.path)
                if parts.path.rstrip("/") != "/v2/check":
                    self._reply(404, "Error: not found", {})
                    return
                merged = {**parse_qs(parts.query), **parse_qs(raw, keep_blank_values=True)}
                self._reply(*fake._check({key: values[0] for key, values in merged.items()}))

            def do_GET(self) -> None:
                if urlsplit(self.path).path.rstrip("/") == "/v2/languages":
                    english = {"name": "English (US)", "code": "en", "longCode": "en-US"}
                    self._reply(200, [english], {})
                    return
                self._reply(404, "Error: not found", {})

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    args = parser.parse_args()
    with FakeLanguageTool(host=args.host, port=args.port) as server:
        print(f"fake LanguageTool at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
