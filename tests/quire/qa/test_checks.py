"""The checks that need only the text, the brief's QA config and the clock."""

from __future__ import annotations

import datetime as dt

import pytest

from quire.qa.checks import check_lateness, check_length, check_terms, word_count
from quire.qa.config import Check, QAConfig
from quire.qa.results import CheckResult

DEADLINE = dt.datetime(2030, 5, 1, 17, 0, tzinfo=dt.UTC)


def words(n: int) -> str:
    return " ".join(["word"] * n)


# --- length --------------------------------------------------------------------------------------


def test_words_are_counted_as_a_reader_counts_them():
    assert word_count("Don't over-think it: 3 well-known rules, then DRY.") == 8
    assert word_count("  \n\t ") == 0
    assert word_count("naïve café, 東京") == 3


def test_without_bounds_the_length_check_passes_and_reports_the_count():
    result = check_length(words(42), QAConfig())
    assert result.check is Check.LENGTH
    assert result.passed
    assert result.details["words"] == 42
    assert result.summary == "42 words (the brief sets no length)"


@pytest.mark.parametrize(
    ("count", "passed", "summary"),
    [
        (799, False, "Too short: 799 words, the brief asks for 800-1,200 words"),
        (800, True, "800 words, within the brief's 800-1,200 words"),
        (1200, True, "1,200 words, within the brief's 800-1,200 words"),
        (1201, False, "Too long: 1,201 words, the brief asks for 800-1,200 words"),
    ],
)
def test_length_bounds_are_inclusive(count, passed, summary):
    result = check_length(words(count), QAConfig(min_words=800, max_words=1200))
    assert (result.passed, result.summary) == (passed, summary)


def test_one_sided_bounds_say_so():
    assert "at least 500 words" in check_length(words(10), QAConfig(min_words=500)).summary
    too_long = check_length(words(11), QAConfig(max_words=10))
    assert not too_long.passed
    assert "at most 10 words" in too_long.summary


# --- terms ---------------------------------------------------------------------------------------


def test_banned_terms_are_found_case_insensitively_and_counted():
    qa = QAConfig(banned_terms=["synergy", "Leverage"])
    result = check_terms("SYNERGY here, synergy there; we leverage nothing else.", qa)
    assert not result.passed
    assert result.details["banned_found"] == {"synergy": 2, "Leverage": 1}
    assert result.summary == "2 banned terms used"
    assert 'Banned term "synergy" appears 2 times' in result.findings


def test_terms_match_whole_words_only():
    qa = QAConfig(banned_terms=["art", "C++"], required_terms=["ledger"])
    result = check_terms("Start with the ledgers. Smart people use C++11.", qa)
    assert result.details["banned_found"] == {}
    assert result.details["required_missing"] == ["ledger"]


def test_terms_that_begin_or_end_with_punctuation_still_match_as_terms():
    qa = QAConfig(banned_terms=["C++", ".NET"])
    result = check_terms("We rewrote it from C++ to .NET, twice.", qa)
    assert result.details["banned_found"] == {"C++": 1, ".NET": 1}


def test_phrases_match_across_any_whitespace():
    qa = QAConfig(required_terms=["double-entry  bookkeeping", "general ledger"])
    result = check_terms("Double-entry\nbookkeeping keeps the General   Ledger honest.", qa)
    assert result.passed
    assert result.summary == "All required terms present, no banned terms used"


def test_missing_required_terms_are_named():
    qa = QAConfig(required_terms=["invariant", "reconciliation", "Invariant"])
    result = check_terms("Every invariant matters.", qa)
    assert not result.passed
    assert result.details["required_missing"] == ["reconciliation"]
    assert result.details["required_checked"] == 2  # repeats of one term count once
    assert result.findings == ('Required term "reconciliation" is missing',)


def test_banned_and_missing_are_reported_together():
    qa = QAConfig(banned_terms=["very unique"], required_terms=["ledger"])
    result = check_terms("A very unique idea.", qa)
    assert result.summary == "1 banned term used; 1 required term missing"


def test_a_brief_without_terms_passes_the_terms_check():
    result = check_terms("anything", QAConfig())
    assert result.passed
    assert result.summary == "The brief names no required or banned terms"


def test_regex_characters_in_terms_are_taken_literally():
    qa = QAConfig(banned_terms=["a.b", "(x)"])
    result = check_terms("axb and (x) here", qa)
    assert result.details["banned_found"] == {"(x)": 1}


# --- lateness ------------------------------------------------------------------------------------


def test_work_handed_in_before_the_deadline_is_on_time():
    result = check_lateness(DEADLINE - dt.timedelta(hours=3, minutes=5), DEADLINE)
    assert result.check is Check.LATENESS
    assert result.passed
    assert result.summary == "On time (3 hours 5 minutes early)"
    assert result.details["late_seconds"] == 0


def test_work_handed_in_exactly_at_the_deadline_is_on_time():
    assert check_lateness(DEADLINE, DEADLINE).summary == "On time (at the deadline)"


@pytest.mark.parametrize(
    ("late_by", "said"),
    [
        (dt.timedelta(milliseconds=10), "Late by under a second"),
        (dt.timedelta(seconds=45), "Late by 45 seconds"),
        (dt.timedelta(minutes=1), "Late by 1 minute"),
        (dt.timedelta(hours=2, minutes=30), "Late by 2 hours 30 minutes"),
        (dt.timedelta(days=1, hours=3, minutes=7), "Late by 1 day 3 hours"),
        (dt.timedelta(days=3, minutes=7), "Late by 3 days 7 minutes"),
    ],
)
def test_late_work_says_by_how_long(late_by, said):
    result = check_lateness(DEADLINE + late_by, DEADLINE)
    assert not result.passed
    assert result.summary == said
    assert result.details["late_seconds"] == int(late_by.total_seconds())


def test_lateness_compares_instants_not_wall_clocks():
    paris = dt.timezone(dt.timedelta(hours=2))
    submitted = dt.datetime(2030, 5, 1, 18, 30, tzinfo=paris)  # 16:30 UTC
    assert check_lateness(submitted, DEADLINE).passed


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        check_lateness(dt.datetime(2030, 5, 1), DEADLINE)


def test_results_are_json_round_trippable_for_prefect():
    result = check_terms("synergy", QAConfig(banned_terms=["synergy"]))
    assert CheckResult.model_validate_json(result.model_dump_json()) == result
