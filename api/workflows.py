"""The API's one door into Prefect: resuming a QA run that waits for a reviewer.

Prefect is imported on first use, so an API process that never resumes a run never pays for it.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx

from quire.errors import Conflict, Unavailable

# A reviewer's request waits at most this long for Prefect (whose client retries a busy server):
# past it the answer is a 503 to retry, not a request that hangs. If Prefect took the decision
# after all, the retry is a 409 (the run is no longer waiting).
RESUME_TIMEOUT_SECONDS = 30.0


async def resume(flow_run_id: uuid.UUID, run_input: dict[str, Any]) -> None:
    """Hand `run_input` to a suspended flow run, or say clearly why it could not be done."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        # Without it Prefect's client would start a private temporary server of its own,
        # which knows none of our runs.
        raise Unavailable(
            "the API is not connected to a Prefect server: set PREFECT_API_URL",
            code="workflow_unavailable",
        )
    try:
        with anyio.fail_after(RESUME_TIMEOUT_SECONDS):
            async with get_client() as client:
                response = await client.resume_flow_run(flow_run_id, run_input=run_input)
    except TimeoutError:
        raise Unavailable(
            f"the workflow engine did not answer within {RESUME_TIMEOUT_SECONDS:.0f} s; try again",
            code="workflow_unavailable",
        ) from None
    except ObjectNotFound:
        raise Conflict(
            f"the QA run {flow_run_id} no longer exists in Prefect", code="review_not_open"
        ) from None
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code in (409, 422):  # input already given, or not the form's
            raise Conflict(
                f"Prefect refused the decision: {exc.response.text}", code="review_not_open"
            ) from None
        raise Unavailable(
            f"the workflow engine could not take the review: {exc}", code="workflow_unavailable"
        ) from None
    except (httpx.HTTPError, OSError) as exc:
        raise Unavailable(
            f"the workflow engine could not take the review: {exc}", code="workflow_unavailable"
        ) from None
    if response.status != SetStateStatus.ACCEPT:
        # ABORT: not paused (another decision just resumed it); REJECT: e.g. the wait timed out.
        reason = response.details.reason if response.details else response.status
        raise Conflict(
            f"the QA run is not waiting for this review any more: {reason}",
            code="review_not_open",
        )
