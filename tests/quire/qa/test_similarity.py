"""Near-duplicate detection: MinHash signatures, an LSH band index in the database, and the check.

Database tests run on SQLite and PostgreSQL (the `database` fixture): tenants and people come from
the people service (tests/support/world.py), orders and submissions straight from the models.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from quire.db import Database, utcnow
from quire.errors import NotFound
from quire.orders.models import Order, Submission
from quire.orders.schemas import MAX_CONTENT_CHARS
from quire.orders.state import OrderStatus
from quire.qa import similarity
from quire.qa.config import Check, QAConfig
from quire.qa.models import QASignature, QASignatureBand
from quire.qa.similarity import (
    BANDS,
    Signature,
    check_duplicate,
    find_near_duplicates,
    index_submission,
    signature,
)
from tests.quire.qa.texts import COFFEE, GARDENING, LEDGERS, lightly_edited
from tests.support.world import World, build_world

# --- signatures (pure) ---------------------------------------------------------------------------


def test_a_signature_is_the_same_in_every_process_whatever_the_hash_seed():
    """Workers on other machines must compute the band hashes this one stored."""
    code = (
        "from quire.qa.similarity import signature, band_hashes; import sys; "
        "s = signature(sys.stdin.read()); print(s.values[:8], band_hashes(s)[:4])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            input=LEDGERS,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "random")
    }
    here = signature(LEDGERS)
    assert outputs == {f"{here.values[:8]} {similarity.band_hashes(here)[:4]}\n"}


def test_a_lightly_edited_copy_is_estimated_close_to_its_true_jaccard_similarity():
    original, copy = similarity.shingles(LEDGERS), similarity.shingles(lightly_edited(LEDGERS))
    jaccard = len(original & copy) / len(original | copy)
    estimate = signature(LEDGERS).similarity(signature(lightly_edited(LEDGERS)))
    assert jaccard > 0.85
    assert estimate == pytest.approx(jaccard, abs=0.1)


def test_case_punctuation_and_line_breaks_do_not_change_the_signature():
    reflowed = " ".join(LEDGERS.replace(",", "").replace(".", "!").split()).lower()
    assert signature(reflowed) == signature(LEDGERS)


def test_unrelated_texts_share_almost_nothing():
    assert signature(LEDGERS).similarity(signature(GARDENING)) < 0.1
    assert signature(GARDENING).similarity(signature(COFFEE)) < 0.1


def test_a_signature_survives_storage_and_json():
    sig = signature(COFFEE)
    assert Signature.from_bytes(sig.to_bytes(), sig.shingles) == sig
    assert Signature.model_validate_json(sig.model_dump_json()) == sig
    assert len(sig.to_bytes()) == 128 * 8


def test_texts_shorter_than_one_shingle_cannot_be_compared():
    sig = signature("All done, see attached.")
    assert sig.shingles == 0
    assert not sig.comparable


def test_a_long_submission_is_signed_quickly():
    """The largest allowed submission (500,000 characters) must not stall a worker."""
    rng = random.Random(7)
    content = " ".join(f"w{rng.randrange(5_000)}" for _ in range(80_000))
    assert len(content) <= MAX_CONTENT_CHARS
    started = time.perf_counter()
    sig = signature(content)
    assert sig.shingles > 70_000
    assert time.perf_counter() - started < 10


# --- the index, on both databases ----------------------------------------------------------------


@pytest.fixture
def acme(database: Database) -> World:
    return build_world(database, "acme")


@pytest.fixture
def globex(database: Database) -> World:
    return build_world(database, "globex")


def new_order(s: Session, world: World, title: str = "Blog post") -> Order:
    """An order the world's specialist holds, written through the model: these tests are about
    the QA index, not the marketplace's state machine (tested in tests/quire/orders)."""
    order = Order(
        tenant_id=world.tenant_id,
        title=title,
        brief="Write it well.",
        fee_minor=10_000,
        currency="EUR",
        deadline=utcnow() + dt.timedelta(days=2),
        qa_config=QAConfig().model_dump(mode="json"),
        status=OrderStatus.SUBMITTED,
        created_by=world.manager.id,
        specialist_id=world.specialist.id,
    )
    s.add(order)
    s.flush()
    return order


def add_submission(s: Session, world: World, order_id: uuid.UUID, content: str) -> Submission:
    """The order's next numbered submission (a rework version when it is not the first)."""
    latest = s.scalar(select(func.max(Submission.number)).where(Submission.order_id == order_id))
    submission = Submission(
        tenant_id=world.tenant_id,
        order_id=order_id,
        specialist_id=world.specialist.id,
        number=(latest or 0) + 1,
        content=content,
        content_hash=hashlib.sha256(content.encode()).hexdigest(),
    )
    s.add(submission)
    s.flush()
    return submission


def submit_on_new_order(
    database: Database, world: World, content: str, *, title: str = "Blog post"
) -> tuple[uuid.UUID, uuid.UUID]:
    with database.session(world.tenant_id, write=True) as s:
        order = new_order(s, world, title)
        return order.id, add_submission(s, world, order.id, content).id


def resubmit(database: Database, world: World, order_id: uuid.UUID, content: str) -> uuid.UUID:
    with database.session(world.tenant_id, write=True) as s:
        return add_submission(s, world, order_id, content).id


def submit_and_index(
    database: Database, world: World, content: str, *, title: str = "Blog post"
) -> tuple[uuid.UUID, uuid.UUID]:
    order_id, submission_id = submit_on_new_order(database, world, content, title=title)
    index(database, world, order_id, submission_id, content)
    return order_id, submission_id


def index(
    database: Database, world: World, order_id: uuid.UUID, submission_id: uuid.UUID, content: str
) -> bool:
    with database.session(world.tenant_id, write=True) as s:
        return index_submission(s, submission_id, order_id, signature(content))


def check(database: Database, world: World, order_id: uuid.UUID, content: str, **kw: Any):
    with database.session(world.tenant_id) as s:
        return check_duplicate(s, order_id, signature(content), **kw)


def test_a_lightly_edited_copy_of_another_orders_submission_is_flagged(database, acme):
    original_order, original = submit_and_index(database, acme, LEDGERS, title="Ledgers 101")
    copy_order, _copy = submit_and_index(database, acme, lightly_edited(LEDGERS))

    result = check(database, acme, copy_order, lightly_edited(LEDGERS))

    assert result.check is Check.DUPLICATE
    assert not result.passed
    [match] = result.details["matches"]
    assert match["submission_id"] == str(original)
    assert match["order_id"] == str(original_order)
    assert match["similarity"] >= 0.8
    assert 'submission #1 of order "Ledgers 101"' in result.summary
    assert "% similar" in result.summary


def test_an_unrelated_text_is_not_flagged(database, acme):
    submit_and_index(database, acme, LEDGERS)
    submit_and_index(database, acme, GARDENING)
    order_id, _ = submit_and_index(database, acme, COFFEE)

    result = check(database, acme, order_id, COFFEE)

    assert result.passed
    assert not result.skipped
    assert result.details["matches"] == []
    assert result.summary.startswith("No near-duplicate")


def test_rework_of_the_same_order_is_not_flagged_against_its_earlier_submission(database, acme):
    order_id, _first = submit_and_index(database, acme, LEDGERS)
    second = resubmit(database, acme, order_id, LEDGERS + "\nOne more closing sentence.")
    index(database, acme, order_id, second, LEDGERS + "\nOne more closing sentence.")

    assert check(database, acme, order_id, LEDGERS).passed


def test_another_tenants_identical_text_is_invisible(database, acme, globex):
    submit_and_index(database, globex, LEDGERS)
    order_id, _ = submit_and_index(database, acme, LEDGERS)

    result = check(database, acme, order_id, LEDGERS)

    assert result.passed, result.summary
    with database.session(acme.tenant_id) as s:
        assert s.scalar(select(func.count()).select_from(QASignature)) == 1


def test_matches_are_ranked_and_the_threshold_is_configurable(database, acme):
    _, exact = submit_and_index(database, acme, LEDGERS)
    _, edited = submit_and_index(database, acme, lightly_edited(LEDGERS))
    order_id, _ = submit_on_new_order(database, acme, LEDGERS)

    with database.session(acme.tenant_id) as s:
        matches = find_near_duplicates(s, order_id, signature(LEDGERS), threshold=0.8)
        strict = find_near_duplicates(s, order_id, signature(LEDGERS), threshold=0.95)

    assert [m.submission_id for m in matches] == [exact, edited]
    assert matches[0].similarity == 1.0
    assert [m.submission_id for m in strict] == [exact]
    with pytest.raises(ValueError, match="threshold"):
        check(database, acme, order_id, LEDGERS, threshold=1.5)


def test_indexing_the_same_submission_twice_is_harmless(database, acme):
    order_id, submission_id = submit_and_index(database, acme, LEDGERS)
    assert index(database, acme, order_id, submission_id, LEDGERS)

    with database.session(acme.tenant_id) as s:
        assert s.scalar(select(func.count()).select_from(QASignature)) == 1
        assert s.scalar(select(func.count()).select_from(QASignatureBand)) == BANDS


def test_a_submission_too_short_to_compare_is_not_indexed_and_the_check_is_skipped(database, acme):
    order_id, submission_id = submit_on_new_order(database, acme, "Done, see attached.")
    assert not index(database, acme, order_id, submission_id, "Done, see attached.")

    result = check(database, acme, order_id, "Done, see attached.")

    assert result.skipped
    assert result.passed
    assert "Too short" in result.summary


def test_only_a_submission_of_the_sessions_tenant_and_of_the_named_order_is_indexed(
    database, acme, globex
):
    acme_order, acme_submission = submit_on_new_order(database, acme, LEDGERS)
    other_order, _ = submit_on_new_order(database, acme, GARDENING)
    _, globex_submission = submit_on_new_order(database, globex, COFFEE)

    with pytest.raises(NotFound):
        index(database, acme, acme_order, globex_submission, COFFEE)
    with pytest.raises(ValueError, match="belongs to order"):
        index(database, acme, other_order, acme_submission, LEDGERS)
    with database.session(acme.tenant_id) as s:
        assert s.scalar(select(func.count()).select_from(QASignature)) == 0


# --- no pairwise scan ----------------------------------------------------------------------------


def bulk_history(database: Database, world: World, orders_count: int) -> None:
    """`orders_count` past orders with one indexed submission each, unrelated to the samples."""
    rng = random.Random(orders_count)
    with database.session(world.tenant_id, write=True) as s:
        for i in range(orders_count):
            order = new_order(s, world, f"Past order {i}")
            content = " ".join(f"archive{rng.randrange(100_000)}" for _ in range(80))
            submission = add_submission(s, world, order.id, content)
            index_submission(s, submission.id, order.id, signature(content))


def test_only_candidates_sharing_a_band_are_read_and_compared(database, acme, monkeypatch):
    """Hundreds of unrelated submissions in the index; a check reads the one signature that
    matters."""
    bulk_history(database, acme, 200)
    _, copied = submit_and_index(database, acme, LEDGERS)
    order_id, _ = submit_on_new_order(database, acme, lightly_edited(LEDGERS))

    loaded: list[int] = []
    original = Signature.from_bytes.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Signature], data: bytes, shingles: int) -> Signature:
        loaded.append(shingles)
        return original(cls, data, shingles)

    monkeypatch.setattr(Signature, "from_bytes", classmethod(counting))
    with database.session(acme.tenant_id) as s:
        matches = find_near_duplicates(s, order_id, signature(lightly_edited(LEDGERS)))

    assert [m.submission_id for m in matches] == [copied]
    assert len(loaded) == 1


@contextmanager
def captured_selects(database: Database) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def plan(session: Session, database: Database, statement: str, parameters: Any) -> str:
    connection = session.connection()
    if database.is_sqlite:
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return "\n".join(str(row[-1]) for row in rows)
    # As if the tables were too large to read whole: what does the planner search by?
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
    return "\n".join(str(row[0]) for row in rows)


def test_the_lookup_is_an_index_search_by_band_hash_then_by_primary_key(database, acme):
    """Every statement of a lookup searches an index by key: nothing grows with the history."""
    bulk_history(database, acme, 300)
    submit_and_index(database, acme, LEDGERS)
    order_id, _ = submit_and_index(database, acme, GARDENING)
    with database.session(acme.tenant_id, write=True) as s:
        s.connection().exec_driver_sql("ANALYZE")

    with captured_selects(database) as statements, database.session(acme.tenant_id) as s:
        assert find_near_duplicates(s, order_id, signature(LEDGERS))
    with database.session(acme.tenant_id) as s:
        plans = [plan(s, database, sql, parameters) for sql, parameters in statements]

    bands, signatures, titles = plans  # candidates, their signatures, the matches' titles
    if database.is_sqlite:
        assert "INDEX ix_qa_signature_bands_lookup (tenant_id=? AND band_hash=?)" in bands, bands
        assert "USING INDEX sqlite_autoindex_qa_signatures_1 (submission_id=?)" in signatures
        assert "USING INDEX sqlite_autoindex_submissions_1 (id=?)" in titles, titles
        assert "USING INDEX sqlite_autoindex_orders_1 (id=?)" in titles, titles
    else:
        assert "using ix_qa_signature_bands_lookup" in bands, bands
        assert "band_hash = ANY" in bands.split("Index Cond:")[1], bands
        assert "Index Scan using pk_qa_signatures" in signatures, signatures
        assert "using pk_submissions" in titles, titles
        assert "using pk_orders" in titles, titles
