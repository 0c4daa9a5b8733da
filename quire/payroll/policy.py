"""Who may do what with bank details, holds and the payroll profile.

- A **specialist** reads and changes only their own bank details (`/me/payout-details`), and sees
  them in full. Nobody else changes them: not finance, not admins (an account that finance could
  redirect would defeat the point of the cooling period).
- **Finance** sets and lifts holds and maintains the payroll profile (the account payouts leave
  from); a finance user who is also a specialist may not hold or release their own payouts.
- **Admins** may read what finance reads (masked details, holds, the profile) but not change it:
  moving money is finance's duty, and an admin who must act grants themselves the finance role,
  which the audit log records as a role change. Managers and reviewers are refused.
"""

from __future__ import annotations

import uuid

from quire.errors import Forbidden
from quire.people.actor import Actor
from quire.people.models import Role

READERS = (Role.FINANCE, Role.ADMIN)
WRITERS = (Role.FINANCE,)


def may_keep_own_details(actor: Actor) -> None:
    """Only a specialist has bank details of their own."""
    actor.require(Role.SPECIALIST)


def may_read_payouts(actor: Actor) -> None:
    actor.require(*READERS)


def may_change_payouts(actor: Actor) -> None:
    actor.require(*WRITERS)


def may_hold(actor: Actor, specialist_id: uuid.UUID) -> None:
    """Finance holds and releases anyone's payouts but their own."""
    may_change_payouts(actor)
    if actor.user_id == specialist_id:
        raise Forbidden(
            "a hold on your own payouts is set or lifted by another finance user",
            code="own_payout_hold",
        )
