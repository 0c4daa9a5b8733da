"""The playbooks Quire ships: what a tenant runs until it stores its own, and what it starts
from when it does. They are YAML beside this module (comments let them explain themselves),
read with `yaml.safe_load` and validated like any tenant's playbook."""

from __future__ import annotations

import copy
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from quire.errors import Invalid, NotFound
from quire.lifecycle.playbooks import EVENT_TYPES, Playbook, validate_playbook

FILES: dict[str, str] = {
    "person.onboard": "specialist_onboarding.yaml",
    "person.exit": "specialist_exit.yaml",
    "person.transfer": "staff_transfer.yaml",
}


@cache
def _definition(event_type: str) -> dict[str, Any]:
    if event_type not in EVENT_TYPES:
        raise Invalid(
            f"unknown event type {event_type!r}; the types are {', '.join(EVENT_TYPES)}",
            code="unknown_event_type",
        )
    if event_type not in FILES:
        raise NotFound(f"Quire ships no playbook for {event_type}", code="no_playbook")
    text = files(__package__).joinpath(FILES[event_type]).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    validate_playbook(data, event_type=event_type)  # a shipped playbook is valid, or a bug
    return data


def shipped_definition(event_type: str) -> dict[str, Any]:
    """The shipped playbook for `event_type` as data (a copy: the caller may store or edit it).
    `NotFound` for an event type Quire ships none for (person.update), `Invalid` for one that
    does not exist."""
    return copy.deepcopy(_definition(event_type))


def shipped_playbook(event_type: str) -> Playbook:
    """The shipped playbook for `event_type`, validated."""
    return validate_playbook(shipped_definition(event_type), event_type=event_type)
