"""Every mapped table, imported in one place so metadata is complete (Alembic, tests)."""

from quire.auth.models import ApiKey, RateLimitCounter, RefreshToken
from quire.db import Base
from quire.events.models import Event
from quire.idempotency import IdempotencyRecord
from quire.orders.models import Bid, Order, Submission
from quire.people.models import SpecialistProfile, Tenant, User

__all__ = [
    "ApiKey",
    "Base",
    "Bid",
    "Event",
    "IdempotencyRecord",
    "Order",
    "RateLimitCounter",
    "RefreshToken",
    "SpecialistProfile",
    "Submission",
    "Tenant",
    "User",
]
