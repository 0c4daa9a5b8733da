"""The order state machine: every legal transition, and every illegal one refused."""

import pytest

from quire.orders.state import (
    TERMINAL,
    TRANSITIONS,
    Action,
    IllegalTransition,
    OrderStatus,
)

ILLEGAL = [
    (action, status)
    for action, (sources, _) in TRANSITIONS.items()
    for status in OrderStatus
    if status not in sources
]


@pytest.mark.parametrize(("action", "status"), ILLEGAL)
def test_an_illegal_transition_says_why(action, status):
    refused = IllegalTransition(action, status)
    assert refused.code == "illegal_transition"
    assert str(status) in refused.message
    assert refused.details["allowed_from"] == sorted(TRANSITIONS[action][0])


def test_the_happy_path_reads_like_the_marketplace():
    status = OrderStatus.DRAFT
    for action in (
        Action.PUBLISH,
        Action.CLAIM,
        Action.SUBMIT,
        Action.START_REVIEW,
        Action.REQUEST_REWORK,
        Action.SUBMIT,
        Action.ACCEPT,
    ):
        sources, to = TRANSITIONS[action]
        assert status in sources, (action, status)
        status = to
    assert status is OrderStatus.ACCEPTED


def test_terminal_states_allow_nothing():
    for status in TERMINAL:
        assert not [a for a, (sources, _) in TRANSITIONS.items() if status in sources]


def test_every_non_terminal_state_has_a_way_out():
    for status in set(OrderStatus) - TERMINAL:
        assert [a for a, (sources, _) in TRANSITIONS.items() if status in sources], status
