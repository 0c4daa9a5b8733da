"""A fake LanguageTool server: a real HTTP server on 127.0.0.1, for the grammar check's tests.

It speaks the part of the LanguageTool HTTP API that Quire uses (`POST /v2/check` with form fields
`text` and `language`, answering `{"matches": [...]}` with offsets in UTF-16 units as the Java
server does, 400 for a missing parameter, 413 past `max_text_chars`), and flags two things:
a word repeated ("the the", rule ENGLISH_WORD_REPEAT_RULE) and any word of `misspellings`
(rule MORFOLOGIK_RULE_EN_US). Because it is a real socket server, Prefect flow runs and
subprocess workers can reach it like the real service.

    with FakeLanguageTool() as server:
        server.fail_next(2, status=503)     # the next two check requests fail, then it recovers
        server.delay_next(1, seconds=5)     # the next one is answered (normally) 5 s late
        check_grammar(client, server.url, text, 5.0)
        server.request_count                # requests to /v2/check so far (failed ones too)

The server thread and these switches (`down` and the others) are `FakeWebService`'s, in
deployments/local_web.py; this module says only how LanguageTool answers.

Standalone, for a worker in another process:
    python -m tests.support.fake_languagetool --port 8010
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from deployments.local_web import Answer, FakeWebService, Received, serve_standalone
from deployments.net import HOST

DEFAULT_MISSPELLINGS: Mapping[str, str] = {
    "teh": "the",
    "recieve": "receive",
    "seperate": "separate",
    "definately": "definitely",
}
_REPEAT = re.compile(r"\b(\w+)(\s+)(\1)\b", re.IGNORECASE)
_LANGUAGE = re.compile(r"^(auto|[a-z]{2,3}(-[A-Z]{2})?)$")


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


class FakeLanguageTool(FakeWebService):
    """The fake service and its controls (see FakeWebService). Start with `with` (or
    start()/stop()). Its fault switches apply to check requests only."""

    thread_name = "fake-languagetool"
    server_version = "FakeLanguageTool/1.0"

    def __init__(
        self,
        *,
        misspellings: Mapping[str, str] = DEFAULT_MISSPELLINGS,
        max_text_chars: int = 20_000,
        host: str = HOST,
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.misspellings = {word.lower(): fix for word, fix in misspellings.items()}
        self.max_text_chars = max_text_chars

    # --- controls for tests -------------------------------------------------------------------

    def failure_body(self, status: int) -> Any:
        return f"Error: simulated failure ({status})"

    @property
    def request_count(self) -> int:
        """Requests received on /v2/check, failed and delayed ones included."""
        return len(self._checks())

    @property
    def texts(self) -> list[str]:
        """The `text` of every check request received, in order."""
        return [_fields(request).get("text") or "" for request in self._checks()]

    # --- serving ------------------------------------------------------------------------------

    def _checks(self) -> list[Received]:
        return [request for request in self.requests if _is_check(request)]

    def faults_apply(self, request: Received) -> bool:
        return _is_check(request)

    def answer(self, request: Received) -> Answer:
        if _is_check(request):
            return self._check(_fields(request))
        if request.method == "GET" and _route(request) == "/v2/languages":
            return 200, [{"name": "English (US)", "code": "en", "longCode": "en-US"}], {}
        return 404, "Error: not found", {}

    def _check(self, form: dict[str, str]) -> Answer:
        """(status, body, headers) for one /v2/check request, as LanguageTool would answer."""
        text = form.get("text")
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


def _route(request: Received) -> str:
    return urlsplit(request.path).path.rstrip("/")


def _is_check(request: Received) -> bool:
    return request.method == "POST" and _route(request) == "/v2/check"


def _fields(request: Received) -> dict[str, str]:
    """A check's parameters: the query string's, then the form body's (which win), as the Java
    server reads them."""
    query = {name: values[0] for name, values in parse_qs(urlsplit(request.path).query).items()}
    return {**query, **request.form}


def main() -> None:
    serve_standalone(
        lambda host, port: FakeLanguageTool(host=host, port=port),
        "fake LanguageTool",
        default_port=8010,
    )


if __name__ == "__main__":
    main()
