"""The API's one door into Prefect: starting a deployment's run (payroll) and resuming a run that
waits for a person (a QA review, a payroll approval).

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


async def resume(
    flow_run_id: uuid.UUID,
    run_input: dict[str, Any],
    *,
    what: str = "QA run",
    closed_code: str = "review_not_open",
) -> None:
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
            f"the {what} {flow_run_id} no longer exists in Prefect", code=closed_code
        ) from None
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code in (409, 422):  # input already given, or not the form's
            raise Conflict(
                f"Prefect refused the decision: {exc.response.text}", code=closed_code
            ) from None
        raise Unavailable(
            f"the workflow engine could not take the decision: {exc}", code="workflow_unavailable"
        ) from None
    except (httpx.HTTPError, OSError) as exc:
        raise Unavailable(
            f"the workflow engine could not take the decision: {exc}", code="workflow_unavailable"
        ) from None
    if response.status != SetStateStatus.ACCEPT:
        # ABORT: not paused (another decision just resumed it); REJECT: e.g. the wait timed out.
        reason = response.details.reason if response.details else response.status
        raise Conflict(
            f"the {what} is not waiting for this decision any more: {reason}",
            code=closed_code,
        )


async def start_deployment(
    name: str, parameters: dict[str, Any], *, idempotency_key: str, tags: list[str]
) -> uuid.UUID:
    """Create a run of deployment `name` (not waiting for it) and return its id. The key makes
    a retried request find the run the first one created, with the first one's parameters."""
    from prefect.deployments.flow_runs import arun_deployment
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise Unavailable(
            "the API is not connected to a Prefect server: set PREFECT_API_URL",
            code="workflow_unavailable",
        )
    try:
        with anyio.fail_after(RESUME_TIMEOUT_SECONDS):
            flow_run = await arun_deployment(
                name,
                parameters=parameters,
                idempotency_key=idempotency_key,
                timeout=0,
                as_subflow=False,
                tags=tags,
            )
    except TimeoutError:
        raise Unavailable(
            f"the workflow engine did not answer within {RESUME_TIMEOUT_SECONDS:.0f} s; try again",
            code="workflow_unavailable",
        ) from None
    except ObjectNotFound:
        raise Unavailable(
            f"deployment {name!r} is not deployed on the Prefect server (run `quire worker` or "
            "`prefect deploy --all`)",
            code="workflow_unavailable",
        ) from None
    except (PrefectHTTPStatusError, httpx.HTTPError, OSError) as exc:
        raise Unavailable(
            f"the workflow engine could not start the run: {exc}", code="workflow_unavailable"
        ) from None
    return flow_run.id


def flow_run_url(flow_run_id: uuid.UUID | None) -> str | None:
    """Where a person sees the run in the Prefect UI (None when no UI address is known)."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    if flow_run_id is None or not ui:
        return None
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}"
