"""The API's one door into Prefect: resuming a QA run that waits for a reviewer.

Prefect is imported on first use, so an API process that never resumes a run never pays for it.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from quire.errors import Conflict, Unavailable


async def resume(flow_run_id: uuid.UUID, run_input: dict[str, Any]) -> None:
    """Hand `run_input` to a suspended flow run, or say clearly why it could not be done."""
    from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
    from prefect.flow_runs import aresume_flow_run
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        # Without it Prefect's client would start a private temporary server of its own,
        # which knows none of our runs.
        raise Unavailable(
            "the API is not connected to a Prefect server: set PREFECT_API_URL",
            code="workflow_unavailable",
        )
    try:
        await aresume_flow_run(flow_run_id, run_input=run_input)
    except NotPausedError:
        raise Conflict(
            "the QA run is not waiting for a review right now (another decision may have just "
            "been given)",
            code="review_not_open",
        ) from None
    except FlowPauseTimeout:
        raise Conflict(
            "the QA run waited too long for this review and timed out", code="review_timed_out"
        ) from None
    except ObjectNotFound:
        raise Conflict(
            f"the QA run {flow_run_id} no longer exists in Prefect", code="review_not_open"
        ) from None
    except (httpx.HTTPError, OSError, RuntimeError) as exc:
        raise Unavailable(
            f"the workflow engine could not take the review: {exc}", code="workflow_unavailable"
        ) from None
