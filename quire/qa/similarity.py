"""Near-duplicate detection against the tenant's other orders, without a pairwise scan.

Text -> normalised word 5-shingles -> MinHash signature (128 hash functions) -> 32 LSH bands of
4 rows. Each band is hashed and stored; a new submission's candidates are the submissions sharing
at least one band hash (an indexed lookup), and only their signatures are compared to estimate the
Jaccard similarity of the shingle sets. Two texts with Jaccard similarity s share a band with
probability 1 - (1 - s^4)^32: 99.9999% at s = 0.8, 87% at 0.5, 5% at 0.2, so the default 0.8
threshold misses essentially nothing, while unrelated texts (s near 0) are almost never read.

Every hash is blake2b, never Python's per-process salted `hash()`: signatures written by one
worker must match those computed by another, today and after a restart.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from hashlib import blake2b

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from quire.db import upsert
from quire.errors import NotFound
from quire.orders.models import Order, Submission
from quire.qa.config import Check
from quire.qa.models import QASignature, QASignatureBand
from quire.qa.results import CheckResult, capped
from quire.tenancy import tenant_of

SHINGLE_WORDS = 5
NUM_PERM = 128
BANDS = 32
ROWS = NUM_PERM // BANDS
DEFAULT_THRESHOLD = 0.8
# Changing any parameter above changes this key, so old band hashes can never match new ones.
SCHEME = f"quire-minhash-v1-k{SHINGLE_WORDS}-p{NUM_PERM}-b{BANDS}".encode()

# h_i(x) = (a_i * x + b_i) mod p over 32-bit shingle hashes x, with a_i, b_i < 2^32: the product
# plus b stays below 2^64, so numpy's uint64 arithmetic is exact (no silent wrap-around).
_PRIME = np.uint64((1 << 61) - 1)
_BLOCK = 4096  # shingles per numpy block: 4096 x 128 x 8 bytes = 4 MiB at a time
_TOKEN = re.compile(r"\w+")
assert BANDS * ROWS == NUM_PERM


def _key(label: str, i: int) -> int:
    digest = blake2b(f"{label}:{i}".encode(), digest_size=4, key=SCHEME[:64]).digest()
    return int.from_bytes(digest, "little")


_A = np.array([_key("a", i) or 1 for i in range(NUM_PERM)], dtype=np.uint64)
_B = np.array([_key("b", i) for i in range(NUM_PERM)], dtype=np.uint64)


class Signature(BaseModel):
    """A text's MinHash signature; JSON-friendly so a Prefect task can return and cache it."""

    model_config = ConfigDict(frozen=True)

    values: tuple[int, ...] = Field(min_length=NUM_PERM, max_length=NUM_PERM)
    shingles: int = Field(ge=0, description="Distinct shingles the signature summarises.")

    @property
    def comparable(self) -> bool:
        """Texts shorter than one shingle carry no evidence of copying either way."""
        return self.shingles > 0

    def to_bytes(self) -> bytes:
        return np.array(self.values, dtype="<u8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, shingles: int) -> Signature:
        values = np.frombuffer(data, dtype="<u8")
        return cls(values=tuple(int(v) for v in values), shingles=shingles)

    def similarity(self, other: Signature) -> float:
        """Estimated Jaccard similarity of the two texts' shingle sets (0.0 to 1.0)."""
        mine = np.array(self.values, dtype=np.uint64)
        theirs = np.array(other.values, dtype=np.uint64)
        return float(np.count_nonzero(mine == theirs)) / NUM_PERM


def shingles(content: str) -> set[str]:
    """Overlapping runs of SHINGLE_WORDS words, after Unicode normalisation and case folding,
    ignoring punctuation and spacing (reflowing or re-punctuating a copy changes nothing)."""
    words = _TOKEN.findall(unicodedata.normalize("NFKC", content).casefold())
    return {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def signature(content: str) -> Signature:
    """The MinHash signature of `content` (deterministic across processes and machines)."""
    found = list(shingles(content))
    minima = np.full(NUM_PERM, _PRIME, dtype=np.uint64)
    if found:
        digests = b"".join(blake2b(s.encode(), digest_size=4).digest() for s in found)
        hashed = np.frombuffer(digests, dtype="<u4").astype(np.uint64)
        for start in range(0, len(hashed), _BLOCK):
            block = hashed[start : start + _BLOCK, None]
            np.minimum(minima, ((block * _A + _B) % _PRIME).min(axis=0), out=minima)
    return Signature(values=tuple(int(v) for v in minima), shingles=len(found))


def band_hashes(sig: Signature) -> list[int]:
    """One signed 64-bit hash per band (BIGINT-sized), the band number mixed into each."""
    packed = sig.to_bytes()
    width = ROWS * 8
    return [
        int.from_bytes(
            blake2b(
                band.to_bytes(2, "little") + packed[band * width : (band + 1) * width],
                digest_size=8,
                key=SCHEME[:64],
            ).digest(),
            "little",
            signed=True,
        )
        for band in range(BANDS)
    ]


def index_submission(
    session: Session, submission_id: uuid.UUID, order_id: uuid.UUID, sig: Signature
) -> bool:
    """Add a submission to its tenant's near-duplicate index; False if it is too short to index.

    Idempotent: indexing the same submission again (a retried task, a re-run flow) writes nothing
    new. The submission must belong to the session's tenant and to `order_id`; that is checked,
    because an entry under the wrong tenant or order would mislead every later lookup.
    """
    tenant_id = tenant_of(session)
    owner = session.scalar(select(Submission.order_id).where(Submission.id == submission_id))
    if owner is None:
        raise NotFound(f"submission {submission_id} not found", code="submission_not_found")
    if owner != order_id:
        raise ValueError(f"submission {submission_id} belongs to order {owner}, not {order_id}")
    if not sig.comparable:
        return False
    insert = upsert(session)
    session.execute(
        insert(QASignature)
        .values(
            tenant_id=tenant_id,
            submission_id=submission_id,
            order_id=order_id,
            signature=sig.to_bytes(),
            shingles=sig.shingles,
        )
        .on_conflict_do_nothing()
    )
    rows = [
        {"tenant_id": tenant_id, "submission_id": submission_id, "band": band, "band_hash": value}
        for band, value in enumerate(band_hashes(sig))
    ]
    session.execute(insert(QASignatureBand).values(rows).on_conflict_do_nothing())
    return True


class Match(BaseModel):
    """A submission on another order of the same tenant, and how similar it is."""

    model_config = ConfigDict(frozen=True)

    submission_id: uuid.UUID
    order_id: uuid.UUID
    similarity: float
    submission_number: int
    order_title: str


def _validate_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")


def candidate_ids(session: Session, sig: Signature) -> set[uuid.UUID]:
    """Submissions of the session's tenant sharing at least one LSH band with `sig`.

    A search of `ix_qa_signature_bands_lookup` (tenant_id, band_hash) and nothing else: its cost
    follows the number of similar submissions, never the size of the tenant's history.
    """
    if not sig.comparable:
        return set()
    rows = session.scalars(
        select(QASignatureBand.submission_id)
        .where(
            QASignatureBand.tenant_id == tenant_of(session),
            QASignatureBand.band_hash.in_(band_hashes(sig)),
        )
        .distinct()
    )
    return set(rows)


def find_near_duplicates(
    session: Session,
    order_id: uuid.UUID,
    sig: Signature,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    submitted_before: dt.datetime | None = None,
) -> list[Match]:
    """Submissions on the tenant's other orders at or above `threshold`, most similar first.

    `submitted_before`: only work handed in earlier counts, so an original is never flagged as a
    copy of a later copy, and re-checking a submission later gives the same answer.

    Three small indexed reads, each by key, so every database plans them the same way: candidate
    ids from the band index, their signatures by primary key (similarity is estimated here), and
    the matches' order titles for the report (usually there are none to fetch).
    """
    _validate_threshold(threshold)
    candidates = candidate_ids(session, sig)
    if not candidates:
        return []
    rows = session.execute(
        select(
            QASignature.submission_id,
            QASignature.order_id,
            QASignature.signature,
            QASignature.shingles,
        ).where(QASignature.submission_id.in_(sorted(candidates)), QASignature.order_id != order_id)
    )
    similar = {
        row.submission_id: (row.order_id, score)
        for row in rows
        if (score := sig.similarity(Signature.from_bytes(row.signature, row.shingles))) >= threshold
    }
    if not similar:
        return []
    earlier = [] if submitted_before is None else [Submission.created_at < submitted_before]
    described = session.execute(
        select(Submission.id, Submission.number, Order.title)
        .join(Order, Order.id == Submission.order_id)
        .where(Submission.id.in_(list(similar)), *earlier)
    )
    matches = [
        Match(
            submission_id=row.id,
            order_id=similar[row.id][0],
            similarity=similar[row.id][1],
            submission_number=row.number,
            order_title=row.title,
        )
        for row in described
    ]
    return sorted(matches, key=lambda m: (-m.similarity, str(m.submission_id)))


def duplicate_result(sig: Signature, matches: list[Match], threshold: float) -> CheckResult:
    """The duplicate check's verdict from the matches found (pure: no database)."""
    details = {
        "threshold": threshold,
        "shingles": sig.shingles,
        "matches": [m.model_dump(mode="json") for m in matches],
    }
    if not sig.comparable:
        return CheckResult.skip(
            Check.DUPLICATE,
            f"Too short to compare (fewer than {SHINGLE_WORDS} words)",
            **details,
        )
    if not matches:
        summary = f"No near-duplicate among the tenant's other orders (threshold {threshold:.0%})"
        return CheckResult(check=Check.DUPLICATE, passed=True, summary=summary, details=details)
    top = matches[0]
    others = f" and {len(matches) - 1} more" if len(matches) > 1 else ""
    summary = (
        f"Near-duplicate of submission #{top.submission_number} of order "
        f'"{top.order_title}" ({top.similarity:.0%} similar){others}'
    )
    findings = [
        f'{m.similarity:.0%} similar to submission #{m.submission_number} of "{m.order_title}" '
        f"(order {m.order_id}, submission {m.submission_id})"
        for m in matches
    ]
    return CheckResult(
        check=Check.DUPLICATE,
        passed=False,
        summary=summary,
        details=details,
        findings=capped(findings),
    )


def check_duplicate(
    session: Session,
    order_id: uuid.UUID,
    sig: Signature,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    submitted_before: dt.datetime | None = None,
) -> CheckResult:
    """Flag the submission if earlier work on another order of the tenant is at least
    `threshold` alike.

    Index the submission (`index_submission`, committed) before checking it, so that of two near
    copies submitted at nearly the same moment the later one still finds the earlier.
    """
    matches = find_near_duplicates(
        session, order_id, sig, threshold, submitted_before=submitted_before
    )
    return duplicate_result(sig, matches, threshold)
