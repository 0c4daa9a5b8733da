"""Who is acting: the authenticated principal as the domain sees it (user or API key)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from quire.errors import Forbidden
from quire.people.models import Role

# Not a user: events written by Quire's own processes carry no actor id.
SYSTEM_USER_ID = UUID(int=0)


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: UUID
    tenant_id: UUID
    roles: frozenset[str]
    via_api_key: UUID | None = None

    def has(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)

    def require(self, *roles: Role) -> None:
        """Refuse unless the actor holds at least one of `roles`."""
        if not self.has(*roles):
            needed = " or ".join(sorted(roles))
            raise Forbidden(f"this action needs the {needed} role", code="wrong_role")

    @classmethod
    def system(cls, tenant_id: UUID) -> Actor:
        """Quire itself (the QA pipeline, maintenance) acting inside one tenant."""
        return cls(SYSTEM_USER_ID, tenant_id, frozenset({Role.ADMIN}))

    @property
    def is_system(self) -> bool:
        return self.user_id == SYSTEM_USER_ID

    @property
    def is_staff(self) -> bool:
        """Staff see every order of their tenant; specialists see open orders and their own."""
        return self.has(Role.ADMIN, Role.MANAGER, Role.REVIEWER, Role.FINANCE)
