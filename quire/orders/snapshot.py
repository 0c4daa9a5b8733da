"""The order snapshot every order event carries."""

from __future__ import annotations

from typing import Any

SNAPSHOT_FIELDS = (
    "id",
    "status",
    "version",
    "title",
    "mode",
    "skill",
    "fee_minor",
    "currency",
    "deadline",
    "specialist_id",
    "published_at",
)


def snapshot(order: Any) -> dict[str, Any]:
    """What an order event carries: enough for a live view to update without a fetch.

    Takes an ORM `Order` or a Core row alike (anything with these attributes).
    """
    return {name: getattr(order, name) for name in SNAPSHOT_FIELDS}
