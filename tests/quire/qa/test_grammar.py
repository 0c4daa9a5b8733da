"""The grammar check against a LanguageTool-compatible service (a fake one, on a real socket)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quire.qa.config import Check
from quire.qa.grammar import (
    ServiceRejected,
    ServiceUnavailable,
    check_grammar,
    chunk_text,
    find_issues,
)
from quire.qa.results import CheckResult
from tests.support.fake_languagetool import FakeLanguageTool

CLEAN = "The ledger balances. Every transfer has two sides. " * 20  # 160 words
SLOPPY = "We recieve the the invoice and teh payment. " * 5  # 40 words, 15 issues


@pytest.fixture
def service() -> Iterator[FakeLanguageTool]:
    with FakeLanguageTool() as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def test_clean_text_passes_and_says_how_it_was_measured(service, client):
    result = check_grammar(client, service.url, CLEAN, max_issues_per_1000_words=5)
    assert result.check is Check.EXTERNAL
    assert result.passed
    assert result.summary == "0 grammar issues in 160 words (0.0 per 1,000 words; limit 5)"
    assert result.details["requests"] == 1 == service.request_count


def test_too_many_issues_per_thousand_words_fails_with_each_issue_located(service, client):
    result = check_grammar(client, service.url, SLOPPY, max_issues_per_1000_words=5)

    assert not result.passed
    assert result.summary.startswith("Too many issues: 15 grammar issues in 40 words")
    assert result.details["by_type"] == {"misspelling": 10, "duplication": 5}
    first = result.details["issues"][0]
    assert first["excerpt"] == "recieve"
    assert first["rule_id"] == "MORFOLOGIK_RULE_EN_US"
    assert first["replacements"] == ["receive"]
    for issue in result.details["issues"]:
        assert SLOPPY[issue["offset"] : issue["offset"] + issue["length"]] == issue["excerpt"]
    assert CheckResult.model_validate_json(result.model_dump_json()) == result  # for Prefect
    assert result.findings[0] == (
        '"recieve" at character 3: Possible spelling mistake found. (suggested: "receive") '
        "[MORFOLOGIK_RULE_EN_US]"
    )


def test_the_limit_is_a_rate_so_long_texts_may_have_a_few_issues(service, client):
    text = CLEAN * 3 + " Then teh end."  # 1 issue in 483 words: 2.1 per 1,000
    assert check_grammar(client, service.url, text, max_issues_per_1000_words=5).passed
    assert not check_grammar(client, service.url, text, max_issues_per_1000_words=2).passed


def test_without_a_service_url_the_check_is_skipped_without_any_request(client):
    result = check_grammar(client, "", SLOPPY, max_issues_per_1000_words=5)
    assert result.skipped
    assert result.passed
    assert result.summary == "Grammar check skipped: no service configured"


def test_offsets_count_emoji_as_the_java_server_does(service, client):
    text = "Launch day \U0001f680\U0001f680 and we recieve praise."
    [issue], _ = find_issues(client, service.url, text)
    assert issue.excerpt == "recieve"
    assert text[issue.offset : issue.offset + issue.length] == "recieve"


# --- failures: transient ones are retried by Prefect, permanent ones are not ---------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_overload_and_server_errors_are_transient(service, client, status):
    service.fail_next(1, status=status, retry_after=7)
    with pytest.raises(ServiceUnavailable, match=str(status)) as failure:
        check_grammar(client, service.url, CLEAN, max_issues_per_1000_words=5)
    assert failure.value.retry_after == 7


def test_after_transient_failures_a_retry_succeeds(service, client):
    service.fail_next(2)
    for _ in range(2):
        with pytest.raises(ServiceUnavailable):
            check_grammar(client, service.url, SLOPPY, max_issues_per_1000_words=5)
    result = check_grammar(client, service.url, SLOPPY, max_issues_per_1000_words=5)
    assert result.details["issue_count"] == 15
    assert service.request_count == 3


def test_an_unreachable_service_is_transient(client):
    with FakeLanguageTool() as server:
        url = server.url
    with pytest.raises(ServiceUnavailable, match="unreachable: ConnectError"):
        check_grammar(client, url, CLEAN, max_issues_per_1000_words=5)


def test_a_slow_service_is_transient(service):
    service.delay_next(1, seconds=2)
    with (
        httpx.Client(timeout=0.3) as impatient,
        pytest.raises(ServiceUnavailable, match="ReadTimeout"),
    ):
        check_grammar(impatient, service.url, CLEAN, max_issues_per_1000_words=5)


def test_a_refused_request_is_permanent_and_says_why(service, client):
    with pytest.raises(ServiceRejected, match=r"400 Bad Request.*not a language code"):
        check_grammar(client, service.url, CLEAN, max_issues_per_1000_words=5, language="english")
    service.fail_next(1, status=403)
    with pytest.raises(ServiceRejected, match="403 Forbidden"):
        check_grammar(client, service.url, CLEAN, max_issues_per_1000_words=5)


def test_a_text_over_the_services_limit_is_permanent_and_names_the_setting(client):
    with (
        FakeLanguageTool(max_text_chars=100) as small,
        pytest.raises(ServiceRejected, match=r"413.*max_chunk_chars"),
    ):
        check_grammar(client, small.url, CLEAN, max_issues_per_1000_words=5)


def test_a_url_that_is_not_http_is_permanent(client):
    with pytest.raises(ServiceRejected, match="not http"):
        check_grammar(client, "ftp://grammar.example", CLEAN, max_issues_per_1000_words=5)


def test_an_answer_that_is_not_languagetool_json_is_permanent():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>login</html>"))
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(ServiceRejected, match="LanguageTool format"),
    ):
        check_grammar(client, "http://grammar.example", CLEAN, max_issues_per_1000_words=5)


# --- long texts ----------------------------------------------------------------------------------


def test_long_text_is_checked_whole_in_chunks_within_the_services_limit(client):
    paragraphs = [f"Paragraph {i} says teh thing. " + CLEAN[:400] for i in range(12)]
    text = "\n\n".join(paragraphs)
    with FakeLanguageTool(max_text_chars=1_000) as small:
        result = check_grammar(
            client, small.url, text, max_issues_per_1000_words=50, max_chunk_chars=1_000
        )
        sent = small.texts

    assert len(sent) == result.details["requests"] > 1
    assert "".join(sent) == text
    assert all(len(chunk) <= 1_000 for chunk in sent)
    assert result.details["issue_count"] == 12
    for issue in result.details["issues"]:
        assert text[issue["offset"] : issue["offset"] + issue["length"]] == "teh"


def test_chunks_end_at_paragraphs_then_sentences_then_spaces():
    text = ("A sentence here. " * 10).strip() + "\n\n" + "Second paragraph goes on. " * 10
    [(_, first), (start, _)] = chunk_text(text, max_chars=220)[:2]
    assert first.endswith("\n\n")
    assert start == len(first)
    sentences = chunk_text("One two three. Four five six seven eight nine.", max_chars=20)
    assert sentences[0][1] == "One two three. "


@given(st.text(min_size=1, max_size=3_000), st.integers(min_value=2, max_value=500))
def test_chunks_cover_the_text_exactly_and_never_exceed_the_limit(text, limit):
    chunks = chunk_text(text, limit)
    assert "".join(chunk for _, chunk in chunks) == text
    assert all(len(chunk) <= limit for _, chunk in chunks)
    assert [start for start, _ in chunks] == [
        sum(len(c) for _, c in chunks[:i]) for i in range(len(chunks))
    ]


# --- the fake itself -----------------------------------------------------------------------------


def test_the_fake_runs_standalone_for_workers_in_other_processes(client):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_languagetool", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"fake LanguageTool at http://127.0.0.1:{port}"
        result = check_grammar(
            client, f"http://127.0.0.1:{port}", SLOPPY, max_issues_per_1000_words=5
        )
        assert result.details["issue_count"] == 15
    finally:
        process.terminate()
        process.wait(10)
