"""Every table of the kernel, imported in one place (the ledger's are in ledger.models)."""

from quire.auth.models import ApiKey, LoginFailure, RateLimitLog, RefreshToken
from quire.db import Base
from quire.events.models import Event
from quire.idempotency import IdempotencyRecord
from quire.orders.models import Bid, Order, Submission
from quire.people.models import SpecialistProfile, Tenant, User
from quire.qa.models import QAReview, QARun, QASignature, QASignatureBand

__all__ = [
    "ApiKey",
    "Base",
    "Bid",
    "Event",
    "IdempotencyRecord",
    "LoginFailure",
    "Order",
    "QAReview",
    "QARun",
    "QASignature",
    "QASignatureBand",
    "RateLimitLog",
    "RefreshToken",
    "SpecialistProfile",
    "Submission",
    "Tenant",
    "User",
]
