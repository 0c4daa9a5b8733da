"""The grammar check: the one automated check that calls an external HTTP service.

It speaks the LanguageTool HTTP API (`POST {base_url}/v2/check`, form fields `text` and
`language`), which a self-hosted LanguageTool server or any compatible service answers.

Long texts: LanguageTool servers cap the text per request (20,000 characters on the public API;
`maxTextLength` when self-hosted), so the content is sent in chunks of at most `max_chunk_chars`,
cut at a paragraph break, else a sentence end, else a space; nothing is left unchecked, and each
issue's offset is mapped back into the whole text. A chunk cut can hide an issue that spans the
cut (a word repeated across it): an accepted loss, much smaller than truncating the text.

LanguageTool is written in Java and counts offsets in UTF-16 code units; they are converted to
Python string indices, so text with emoji still points at the right words.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from quire.qa.checks import word_count
from quire.qa.config import Check
from quire.qa.errors import ServiceRejected, ServiceUnavailable
from quire.qa.results import CheckResult, capped

__all__ = [
    "GrammarIssue",
    "ServiceRejected",
    "ServiceUnavailable",
    "check_grammar",
    "chunk_text",
]

DEFAULT_LANGUAGE = "en-US"
MAX_CHUNK_CHARS = 20_000
# Issues kept in the result's details (the count is always complete).
MAX_ISSUES_KEPT = 100
_TRANSIENT_STATUS = frozenset({408, 425, 429})
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+")


class GrammarIssue(BaseModel):
    """One problem the service found, located in the whole submission."""

    model_config = ConfigDict(frozen=True)

    message: str
    offset: int
    length: int
    excerpt: str
    rule_id: str
    issue_type: str
    replacements: tuple[str, ...] = ()

    def describe(self) -> str:
        fix = f' (suggested: "{self.replacements[0]}")' if self.replacements else ""
        return f'"{self.excerpt}" at character {self.offset}: {self.message}{fix} [{self.rule_id}]'


def _cut(window: str) -> int:
    """Where to end a chunk no longer than `window`: the last paragraph break, else sentence end,
    else space in the window's second half (so chunks stay large), else the full window."""
    half = len(window) // 2
    paragraph = window.rfind("\n\n")
    if paragraph >= half:
        return paragraph + 2
    sentence = max((m.end() for m in _SENTENCE_END.finditer(window, half)), default=-1)
    if sentence > half:
        return sentence
    space = max(window.rfind(" "), window.rfind("\n"))
    if space >= half:
        return space + 1
    return len(window)


def chunk_text(content: str, max_chars: int = MAX_CHUNK_CHARS) -> list[tuple[int, str]]:
    """(start offset, text) pieces of at most `max_chars` that concatenate back to `content`."""
    if max_chars < 2:
        raise ValueError("max_chars must be at least 2")
    chunks: list[tuple[int, str]] = []
    start = 0
    while len(content) - start > max_chars:
        end = start + _cut(content[start : start + max_chars])
        chunks.append((start, content[start:end]))
        start = end
    if start < len(content) or not chunks:
        chunks.append((start, content[start:]))
    return chunks


def _python_index(text: str, utf16_offset: int) -> int:
    """Python index of a UTF-16 offset (they differ after characters outside the BMP)."""
    if text.isascii():
        return utf16_offset
    units = 0
    for index, char in enumerate(text):
        if units >= utf16_offset:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
    return len(text)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _post(client: httpx.Client, url: str, text: str, language: str) -> list[dict[str, Any]]:
    """One request; transient failures raise ServiceUnavailable, permanent ones ServiceRejected."""
    try:
        response = client.post(url, data={"text": text, "language": language})
    except httpx.UnsupportedProtocol as exc:
        raise ServiceRejected(f"grammar service URL {url!r} is not http(s): {exc}") from exc
    except httpx.TransportError as exc:
        raise ServiceUnavailable(
            f"grammar service at {url} unreachable: {type(exc).__name__}: {exc}"
        ) from exc
    status = response.status_code
    if status in _TRANSIENT_STATUS or status >= 500:
        raise ServiceUnavailable(
            f"grammar service at {url} answered {status} {response.reason_phrase}",
            retry_after=_retry_after(response),
        )
    if status != 200:
        hint = ""
        if status == 413:
            hint = " (text longer than the service allows: lower max_chunk_chars)"
        raise ServiceRejected(
            f"grammar service at {url} refused the request with {status} "
            f"{response.reason_phrase}{hint}: {response.text[:300]!r}"
        )
    try:
        matches = response.json()["matches"]
        if not isinstance(matches, list):
            raise TypeError("matches is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise ServiceRejected(
            f"grammar service at {url} did not answer in the LanguageTool format ({exc}): "
            f"{response.text[:300]!r}"
        ) from exc
    return matches


def _issue(content: str, chunk_start: int, chunk: str, match: dict[str, Any]) -> GrammarIssue:
    begin = _python_index(chunk, int(match.get("offset", 0)))
    end = _python_index(chunk, int(match.get("offset", 0)) + int(match.get("length", 0)))
    rule = match.get("rule") or {}
    return GrammarIssue(
        message=str(match.get("message", "")).strip() or "Possible problem",
        offset=chunk_start + begin,
        length=end - begin,
        excerpt=content[chunk_start + begin : chunk_start + end][:80],
        rule_id=str(rule.get("id", "UNKNOWN")),
        issue_type=str(rule.get("issueType", "other")),
        replacements=tuple(
            str(r["value"]) for r in (match.get("replacements") or [])[:3] if "value" in r
        ),
    )


def find_issues(
    client: httpx.Client,
    base_url: str,
    content: str,
    *,
    language: str = DEFAULT_LANGUAGE,
    max_chunk_chars: int = MAX_CHUNK_CHARS,
) -> tuple[list[GrammarIssue], int]:
    """Every issue the service reports in `content`, and how many requests that took."""
    url = f"{base_url.rstrip('/')}/v2/check"
    pieces = chunk_text(content, max_chunk_chars)
    chunks = [(start, chunk) for start, chunk in pieces if chunk.strip()]
    issues = [
        _issue(content, start, chunk, match)
        for start, chunk in chunks
        for match in _post(client, url, chunk, language)
    ]
    return issues, len(chunks)


def check_grammar(
    client: httpx.Client,
    base_url: str,
    content: str,
    max_issues_per_1000_words: float,
    *,
    language: str = DEFAULT_LANGUAGE,
    max_chunk_chars: int = MAX_CHUNK_CHARS,
) -> CheckResult:
    """Pass when the service finds at most `max_issues_per_1000_words` issues per 1,000 words.

    An empty `base_url` means no grammar service is configured: the check is reported as skipped.
    Raises ServiceUnavailable (retry) or ServiceRejected (do not retry) when the service fails.
    """
    if not base_url:
        return CheckResult.skip(Check.EXTERNAL, "Grammar check skipped: no service configured")
    if max_issues_per_1000_words < 0:
        raise ValueError("max_issues_per_1000_words cannot be negative")
    issues, requests = find_issues(
        client, base_url, content, language=language, max_chunk_chars=max_chunk_chars
    )
    words = word_count(content)
    rate = len(issues) * 1000 / words if words else 0.0
    passed = rate <= max_issues_per_1000_words if words else not issues
    counted = f"{len(issues)} grammar issue{'' if len(issues) == 1 else 's'} in {words:,} words"
    measure = f"{rate:.1f} per 1,000 words; limit {max_issues_per_1000_words:g}"
    summary = f"{counted} ({measure})" if passed else f"Too many issues: {counted} ({measure})"
    details = {
        "service": base_url,
        "language": language,
        "words": words,
        "issue_count": len(issues),
        "issues_per_1000_words": round(rate, 2),
        "max_issues_per_1000_words": max_issues_per_1000_words,
        "by_type": dict(Counter(issue.issue_type for issue in issues)),
        "requests": requests,
        "issues": [issue.model_dump(mode="json") for issue in issues[:MAX_ISSUES_KEPT]],
    }
    return CheckResult(
        check=Check.EXTERNAL,
        passed=passed,
        summary=summary,
        details=details,
        findings=capped(issue.describe() for issue in issues),
    )
