"""The API's door into Prefect says clearly when Prefect cannot take a decision, and never hangs."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from api import workflows
from quire.errors import Unavailable


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers (a Prefect server stuck on its lock)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"


async def test_without_a_prefect_server_a_review_is_a_clear_503():
    with (
        temporary_settings(updates={PREFECT_API_URL: ""}),
        pytest.raises(Unavailable) as refused,
    ):
        await workflows.resume(uuid.uuid4(), {"decision": "approve"})
    assert refused.value.code == "workflow_unavailable"


async def test_a_prefect_server_that_does_not_answer_is_a_503_within_the_bound(
    silent_server, monkeypatch
):
    monkeypatch.setattr(workflows, "RESUME_TIMEOUT_SECONDS", 1.0)
    started = time.monotonic()
    with (
        temporary_settings(updates={PREFECT_API_URL: silent_server}),
        pytest.raises(Unavailable) as refused,
    ):
        await workflows.resume(uuid.uuid4(), {"decision": "approve"})
    assert refused.value.code == "workflow_unavailable"
    assert time.monotonic() - started < 10
