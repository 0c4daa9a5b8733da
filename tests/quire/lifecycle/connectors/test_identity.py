"""The SCIM identity connector, against a real SCIM 2.0 server (scim2-server on 127.0.0.1).

What matters most here: an account is created exactly once per step even when an answer is
lost, a stranger's account is never adopted, undo records only what a step changed, and every
failure is classified (transient or permanent) without ever carrying the bearer token.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from scim2_client import InvalidServiceDescriptionException
from scim2_models import Group, ResourceType, ScimProvider, SearchRequest, User

from deployments.local_idp import LocalIdentityProvider
from deployments.net import free_port
from quire.lifecycle.connectors.base import (
    ConnectorFailure,
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
    TransientFailure,
)
from quire.lifecycle.connectors.identity import (
    ScimConnection,
    add_to_groups,
    create_user,
    deactivate,
    delete_user,
    find_user,
    reactivate,
    remove_from_groups,
)
from quire.lifecycle.connectors.scim_httpx import HttpxSCIMClient

TENANT = uuid.uuid4()
TIMEOUT = 0.5  # generous for a local server; the slow faults hold requests for 1 s
SLOW = 1.0


@pytest.fixture
def idp() -> Iterator[LocalIdentityProvider]:
    with LocalIdentityProvider(slow_seconds=SLOW) as server:
        yield server


@pytest.fixture
def connection(idp: LocalIdentityProvider) -> ScimConnection:
    return ScimConnection(base_url=idp.base_url, bearer_token=idp.token)


def step(key: str = "run-1:create", timeout: float = TIMEOUT, **params: Any) -> StepCall:
    return StepCall(tenant_id=TENANT, idempotency_key=key, params=params, timeout_seconds=timeout)


def failure_of(function: Any, *args: Any) -> ConnectorFailure:
    with pytest.raises(ConnectorFailure) as caught:
        function(*args)
    assert caught.value.provider is Provider.IDENTITY
    return caught.value


def onboard(connection: ScimConnection, user_name: str = "ada") -> str:
    outcome = create_user(connection, step(f"run:{user_name}", user_name=user_name))
    return str(outcome.output["user_id"])


def rename(idp: LocalIdentityProvider, user_id: str, user_name: str) -> None:
    """Someone at the identity provider changes the account's userName (a SCIM PATCH)."""
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "userName", "value": user_name}],
    }
    headers = {"Authorization": f"Bearer {idp.token}"}
    with httpx.Client(base_url=idp.base_url, headers=headers) as http:
        http.patch(f"/Users/{user_id}", json=patch).raise_for_status()


# -- accounts ----------------------------------------------------------------------------------


def test_create_user_makes_one_account_whose_external_id_is_the_idempotency_key(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    outcome = create_user(
        connection,
        step(
            "run-1:create",
            user_name="ada.lovelace",
            given_name="Ada",
            family_name="Lovelace",
            display_name="Ada Lovelace",
            emails=["ada@example.com", "ada@home.example"],
            active="true",
        ),
    )

    (account,) = idp.users()
    assert outcome == StepOutcome(
        output={"user_id": account["id"], "user_name": "ada.lovelace"},
        undo={"user_id": account["id"]},
    )
    assert account["externalId"] == "run-1:create"
    assert account["displayName"] == "Ada Lovelace"
    assert account["emails"] == ["ada@example.com", "ada@home.example"]
    assert account["active"] is True


def test_create_user_takes_a_single_email_and_ignores_blank_optional_fields(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    create_user(connection, step(user_name="bo", email="bo@example.com", given_name=""))

    (account,) = idp.users()
    assert account["emails"] == ["bo@example.com"]


def test_bad_parameters_fail_permanently_naming_the_parameter(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    missing = failure_of(create_user, connection, step(given_name="Ada"))
    bad_email = failure_of(create_user, connection, step(user_name="ada", email="not-an-address"))
    typo = failure_of(create_user, connection, step(user_name="ada", usr_name="ada"))
    nobody = failure_of(deactivate, connection, step())

    assert all(isinstance(f, PermanentFailure) for f in (missing, bad_email, typo, nobody))
    assert "user_name" in missing.detail
    assert "email" in bad_email.detail
    assert "usr_name" in typo.detail
    assert "user_id or user_name" in nobody.detail
    assert idp.users() == []


def test_find_user_finds_an_account_by_user_name_whatever_its_case(
    connection: ScimConnection,
) -> None:
    user_id = onboard(connection, "Grace.Hopper")

    assert find_user(connection, "grace.hopper", TIMEOUT) == {
        "user_id": user_id,
        "user_name": "Grace.Hopper",
        "external_id": "run:Grace.Hopper",
        "active": True,
    }
    assert find_user(connection, "nobody", TIMEOUT) is None
    assert find_user(connection, 'quote"and\\backslash', TIMEOUT) is None


def test_delete_user_removes_the_account_and_an_account_already_gone_counts_as_deleted(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    user_id = onboard(connection)

    first = delete_user(connection, step("run:undo", user_id=user_id))
    again = delete_user(connection, step("run:undo", user_id=user_id))

    assert idp.users() == []
    assert first == StepOutcome(output={"user_id": user_id, "already_gone": False})
    assert again == StepOutcome(output={"user_id": user_id, "already_gone": True})


def test_a_create_whose_answer_was_lost_is_undone_by_its_idempotency_key(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    """The step failed for good, so it recorded no user id; its key finds what it made."""
    idp.add_user("someone-else", external_id="run:other")
    idp.fail_next(1, kind="error", lose_answer=True, method="POST")
    failure_of(create_user, connection, step("run:lost", user_name="ada"))
    assert [u["externalId"] for u in idp.users()] == ["run:other", "run:lost"]

    undone = delete_user(connection, step("run:lost:undo", external_id="run:lost"))
    nothing = delete_user(connection, step("run:none:undo", external_id="run:none"))

    assert [u["userName"] for u in idp.users()] == ["someone-else"]
    assert undone.output["already_gone"] is False
    assert nothing.output == {"user_id": None, "already_gone": True}


# -- exactly once ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["error", "slow"])
def test_a_create_retried_after_its_answer_was_lost_returns_the_same_user_and_leaves_one_account(
    idp: LocalIdentityProvider, connection: ScimConnection, kind: str
) -> None:
    idp.fail_next(kind=kind, lose_answer=True, method="POST")  # created, but the answer is lost

    lost = failure_of(create_user, connection, step("run-7:create", user_name="ada"))
    retried = create_user(connection, step("run-7:create", user_name="ada"))

    assert isinstance(lost, TransientFailure)
    (account,) = idp.users()
    assert retried.output == {"user_id": account["id"], "user_name": "ada"}
    assert retried.undo == {"user_id": account["id"]}
    assert idp.answers_lost == 1


def test_a_create_that_never_reached_the_provider_creates_the_account_on_retry(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    idp.fail_next(kind="error", method="POST")

    assert isinstance(failure_of(create_user, connection, step(user_name="ada")), TransientFailure)
    assert idp.users() == []
    create_user(connection, step(user_name="ada"))
    assert [u["userName"] for u in idp.users()] == ["ada"]


@pytest.mark.parametrize("their_external_id", [None, "hr-system:4711"])
def test_a_strangers_account_with_the_same_user_name_is_refused_and_left_alone(
    idp: LocalIdentityProvider, connection: ScimConnection, their_external_id: str | None
) -> None:
    theirs = idp.add_user("Ada", external_id=their_external_id)
    before = idp.users()

    refused = failure_of(create_user, connection, step("run-1:create", user_name="ada"))

    assert isinstance(refused, PermanentFailure)
    assert "already exists" in refused.detail
    assert theirs in refused.detail
    assert idp.users() == before


def account_lands_just_before_the_post(
    idp: LocalIdentityProvider, user_name: str, external_id: str
) -> None:
    """Between the client's lookup and its POST, an account with `user_name` appears."""

    def land(method: str, path: str) -> None:
        if method == "POST":
            idp.before_backend = None
            idp.add_user(user_name, external_id=external_id)

    idp.before_backend = land


def test_a_conflict_on_post_with_our_own_earlier_attempt_returns_that_account(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    """An earlier attempt's POST, answered late, lands between this attempt's lookup and POST."""
    account_lands_just_before_the_post(idp, "ada", external_id="run-1:create")

    outcome = create_user(connection, step("run-1:create", user_name="ada"))

    (account,) = idp.users()
    assert outcome.output == {"user_id": account["id"], "user_name": "ada"}


def test_a_conflict_on_post_with_a_strangers_account_is_refused(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    account_lands_just_before_the_post(idp, "ada", external_id="someone-else")

    refused = failure_of(create_user, connection, step("run-1:create", user_name="ada"))

    assert isinstance(refused, PermanentFailure)
    assert [u["externalId"] for u in idp.users()] == ["someone-else"]


# -- groups ------------------------------------------------------------------------------------


def test_add_to_groups_joins_each_group_and_undo_lists_only_the_groups_it_joined(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    for name in ("staff", "writers", "editors"):
        idp.add_group(name)
    user_id = onboard(connection)
    add_to_groups(connection, step("run:pre", user_id=user_id, groups=["staff"]))

    outcome = add_to_groups(
        connection, step("run:groups", user_id=user_id, groups=["staff", "writers", "editors"])
    )

    assert outcome.output == {"user_id": user_id, "groups": ["writers", "editors"]}
    assert outcome.undo == {"user_id": user_id, "groups": ["writers", "editors"]}
    assert all(idp.members_of(name) == [user_id] for name in ("staff", "writers", "editors"))


def test_add_to_groups_when_already_a_member_of_all_changes_nothing_and_has_nothing_to_undo(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    idp.add_group("staff")
    user_id = onboard(connection)
    add_to_groups(connection, step(user_id=user_id, groups="staff"))

    again = add_to_groups(connection, step(user_id=user_id, groups="staff"))

    assert again == StepOutcome(output={"user_id": user_id, "groups": []}, undo=None)
    assert idp.members_of("staff") == [user_id]


@pytest.mark.parametrize(
    ("user_name", "groups", "named"),
    [
        (None, ["staff", "no-such-team"], "no such group: 'no-such-team'"),
        ("nobody", ["staff"], "no user named 'nobody'"),
    ],
    ids=["missing-group", "unknown-user-name"],
)
def test_add_to_groups_with_a_missing_group_or_account_fails_permanently_naming_it(
    idp: LocalIdentityProvider,
    connection: ScimConnection,
    user_name: str | None,
    groups: list[str],
    named: str,
) -> None:
    """Nothing is changed: not the groups that exist, not another account's memberships."""
    idp.add_group("staff")
    user_id = onboard(connection, "ada")
    account = {"user_name": user_name} if user_name else {"user_id": user_id}

    refused = failure_of(add_to_groups, connection, step(groups=groups, **account))

    assert isinstance(refused, PermanentFailure)
    assert named in refused.detail
    assert idp.members_of("staff") == []


def test_remove_from_groups_leaves_each_group_and_undo_lists_only_the_groups_it_left(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    for name in ("staff", "writers", "editors"):
        idp.add_group(name)
    user_id = onboard(connection)
    other_id = onboard(connection, "bo")
    for member in (user_id, other_id):
        add_to_groups(connection, step(user_id=member, groups=["staff", "writers"]))

    outcome = remove_from_groups(
        connection,
        step(user_id=user_id, groups=["staff", "writers", "editors", "disbanded"]),
    )

    assert outcome.output == {
        "user_id": user_id,
        "groups": ["staff", "writers"],
        "missing_groups": ["disbanded"],
        "missing_user": False,
    }
    assert outcome.undo == {"user_id": user_id, "groups": ["staff", "writers"]}
    assert idp.members_of("staff") == idp.members_of("writers") == [other_id]


def test_add_then_its_compensation_restores_the_memberships(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    idp.add_group("staff")
    idp.add_group("writers")
    user_id = onboard(connection)
    add_to_groups(connection, step(user_id=user_id, groups=["staff"]))

    added = add_to_groups(connection, step(user_id=user_id, groups=["staff", "writers"]))
    assert added.undo is not None
    remove_from_groups(connection, step(**added.undo))

    assert idp.members_of("staff") == [user_id]
    assert idp.members_of("writers") == []


def test_group_steps_find_the_account_by_user_name_and_record_its_id(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    """HR knows the userName, rarely the provider's id: the steps look the name up (whatever
    its case), and what they record names the account by id."""
    for name in ("staff", "writers"):
        idp.add_group(name)
    user_id = onboard(connection, "Ada.Lovelace")
    other_id = onboard(connection, "bo")
    add_to_groups(connection, step(user_id=other_id, groups=["staff", "writers"]))

    joined = add_to_groups(connection, step(user_name="ada.lovelace", groups=["staff", "writers"]))
    assert joined == StepOutcome(
        output={"user_id": user_id, "groups": ["staff", "writers"]},
        undo={"user_id": user_id, "groups": ["staff", "writers"]},
    )
    assert idp.members_of("staff") == idp.members_of("writers") == [other_id, user_id]

    left = remove_from_groups(connection, step(user_name="Ada.Lovelace", groups=["writers"]))
    assert left == StepOutcome(
        output={
            "user_id": user_id,
            "groups": ["writers"],
            "missing_groups": [],
            "missing_user": False,
        },
        undo={"user_id": user_id, "groups": ["writers"]},
    )
    assert idp.members_of("staff") == [other_id, user_id]
    assert idp.members_of("writers") == [other_id]


def test_the_undo_of_a_group_step_by_user_name_works_by_id_even_after_a_rename(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    """The compensation does not look the name up again: it finds the account the step
    changed, not whichever account carries that name by then. Undone last first, as a saga
    undoes."""
    for name in ("staff", "writers"):
        idp.add_group(name)
    user_id = onboard(connection, "ada")
    joined = add_to_groups(connection, step(user_name="ada", groups=["staff", "writers"]))
    left = remove_from_groups(connection, step(user_name="ada", groups=["staff"]))
    rename(idp, user_id, "ada.byron")
    assert joined.undo is not None
    assert left.undo is not None

    add_to_groups(connection, step(**left.undo))
    assert idp.members_of("staff") == idp.members_of("writers") == [user_id]
    remove_from_groups(connection, step(**joined.undo))
    assert idp.members_of("staff") == idp.members_of("writers") == []


def test_removing_an_unknown_user_name_from_groups_succeeds_saying_the_account_is_missing(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    """An account that does not exist has no memberships: like a missing group, it does not
    fail an exit or a compensation. Nothing past the name's lookup is asked or changed."""
    idp.add_group("staff")
    user_id = onboard(connection, "ada")
    add_to_groups(connection, step(user_id=user_id, groups=["staff"]))
    idp.reset_counters()

    outcome = remove_from_groups(
        connection, step(user_name="nobody", groups=["staff", "disbanded"])
    )

    assert outcome == StepOutcome(
        output={"user_id": None, "groups": [], "missing_groups": [], "missing_user": True},
        undo=None,
    )
    assert idp.requests_seen == 1
    assert idp.members_of("staff") == [user_id]


@pytest.mark.parametrize("step_function", [add_to_groups, remove_from_groups])
@pytest.mark.parametrize(
    "account",
    [{}, {"user_id": "u-1", "user_name": "ada"}, {"user_id": "", "user_name": " "}],
    ids=["neither", "both", "both-blank"],
)
def test_a_group_step_names_the_account_by_user_id_or_by_user_name_not_both_nor_neither(
    idp: LocalIdentityProvider,
    connection: ScimConnection,
    step_function: Any,
    account: dict[str, str],
) -> None:
    idp.reset_counters()

    refused = failure_of(step_function, connection, step(groups=["staff"], **account))

    assert isinstance(refused, PermanentFailure)
    assert "bad parameters" in refused.detail
    assert "name the account by user_id or by user_name (one of them)" in refused.detail
    assert idp.requests_seen == 0


def test_deleting_an_account_takes_it_out_of_its_groups(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    idp.add_group("staff")
    user_id = onboard(connection)
    add_to_groups(connection, step(user_id=user_id, groups=["staff"]))

    delete_user(connection, step(user_id=user_id))

    assert idp.members_of("staff") == []


# -- deactivation ------------------------------------------------------------------------------


def test_deactivate_by_user_name_then_reactivate_by_its_undo(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    user_id = onboard(connection, "ada")

    deactivated = deactivate(connection, step("run:exit", user_name="ADA"))
    assert [u["active"] for u in idp.users()] == [False]
    assert deactivated == StepOutcome(output={"user_id": user_id}, undo={"user_id": user_id})

    assert deactivated.undo is not None
    reactivate(connection, step("run:exit", **deactivated.undo))
    assert [u["active"] for u in idp.users()] == [True]


def test_deactivate_by_user_id(idp: LocalIdentityProvider, connection: ScimConnection) -> None:
    user_id = onboard(connection)

    deactivate(connection, step(user_id=user_id))

    assert [u["active"] for u in idp.users()] == [False]


def test_deactivating_or_reactivating_someone_unknown_fails_permanently(
    connection: ScimConnection,
) -> None:
    by_name = failure_of(deactivate, connection, step(user_name="nobody"))
    by_id = failure_of(reactivate, connection, step(user_id="no-such-id"))

    assert isinstance(by_name, PermanentFailure)
    assert "nobody" in by_name.detail
    assert isinstance(by_id, PermanentFailure)
    assert "no-such-id" in by_id.detail


# -- failure classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (503, TransientFailure),
        (500, TransientFailure),
        (429, TransientFailure),
        (400, PermanentFailure),
        (403, PermanentFailure),
    ],
)
def test_an_error_answer_is_classified_by_its_status(
    idp: LocalIdentityProvider,
    connection: ScimConnection,
    status: int,
    expected: type[ConnectorFailure],
) -> None:
    idp.fail_next(kind="error", status=status)

    failure = failure_of(find_user, connection, "ada", TIMEOUT)

    assert type(failure) is expected
    assert str(status) in failure.detail


def test_an_outage_answering_503_without_a_scim_body_is_transient(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    idp.down = True

    failure = failure_of(create_user, connection, step(user_name="ada"))

    assert isinstance(failure, TransientFailure)
    assert "503" in failure.detail
    idp.down = False
    assert idp.users() == []


def test_a_provider_that_does_not_answer_in_time_is_transient_and_the_step_ends_in_time(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    idp.fail_next(kind="slow")
    started = time.monotonic()

    failure = failure_of(find_user, connection, "ada", 0.2)

    assert time.monotonic() - started < SLOW
    assert isinstance(failure, TransientFailure)
    assert "no answer within 0.2 s" in failure.detail


def test_the_timeout_is_the_whole_steps_budget_not_each_requests(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    for name in ("a", "b", "c", "d"):
        idp.add_group(name)
    user_id = onboard(connection)
    idp.slow_seconds = 0.3  # each request answers in time, but several of them do not
    idp.fail_next(10, kind="slow", lose_answer=True)
    started = time.monotonic()

    failure = failure_of(
        add_to_groups, connection, step(user_id=user_id, groups=["a", "b", "c", "d"], timeout=0.4)
    )

    assert isinstance(failure, TransientFailure)
    # without the budget: 8 x 0.3 s; the slack is for a loaded machine
    assert time.monotonic() - started < 0.4 + 1.0


def test_a_refused_connection_is_transient() -> None:
    closed = ScimConnection(base_url=f"http://127.0.0.1:{free_port()}/v2", bearer_token="t0ken")

    failure = failure_of(create_user, closed, step(user_name="ada"))

    assert isinstance(failure, TransientFailure)
    assert "cannot connect" in failure.detail


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_a_refused_bearer_token_is_permanent(idp: LocalIdentityProvider, token: str | None) -> None:
    wrong = ScimConnection(base_url=idp.base_url, bearer_token=token)

    failure = failure_of(find_user, wrong, "ada", TIMEOUT)

    assert isinstance(failure, PermanentFailure)
    assert "401" in failure.detail


def test_an_unusable_resource_id_is_refused_before_sending(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    idp.reset_counters()

    failure = failure_of(delete_user, connection, step(user_id=".."))

    assert isinstance(failure, PermanentFailure)
    assert idp.requests_seen == 0


def test_random_faults_surface_only_as_transient_failures() -> None:
    with LocalIdentityProvider(failure_rate=0.5, seed=3, slow_seconds=0.3) as flaky:
        flaky_connection = ScimConnection(base_url=flaky.base_url, bearer_token=flaky.token)
        failures = []
        for _ in range(12):
            try:
                find_user(flaky_connection, "ada", 0.15)
            except ConnectorFailure as failure:
                failures.append(failure)

    assert 0 < len(failures) == flaky.failures_injected < 12
    assert all(isinstance(f, TransientFailure) for f in failures)
    assert flaky.requests_seen == 12


def test_the_bearer_token_never_appears_in_a_failure(
    idp: LocalIdentityProvider, connection: ScimConnection
) -> None:
    token = idp.token
    assert token is not None
    idp.add_user("taken", external_id="someone-else")
    closed = connection.model_copy(update={"base_url": f"http://127.0.0.1:{free_port()}/v2"})
    failures = [
        failure_of(find_user, closed, "ada", TIMEOUT),
        failure_of(create_user, connection, step(user_name="taken")),
        failure_of(add_to_groups, connection, step(user_id="x", groups=[token])),  # echoed back
        failure_of(reactivate, connection, step(user_id="no-such-id")),
    ]
    idp.fail_next(kind="slow")
    failures.append(failure_of(find_user, connection, "ada", 0.2))
    idp.fail_next(kind="error", status=503, lose_answer=True)
    failures.append(failure_of(find_user, connection, "ada", TIMEOUT))
    failures.append(
        failure_of(find_user, connection.model_copy(update={"bearer_token": None}), "a")
    )

    for failure in failures:
        shown = "".join(traceback.format_exception(failure)) + repr(failure) + failure.detail
        assert token not in shown
    assert "'***'" in failures[2].detail


def test_a_connection_needs_an_http_url() -> None:
    with pytest.raises(ValidationError):
        ScimConnection(base_url="ftp://idp.example/scim")
    assert ScimConnection(base_url="https://idp.example/scim/v2").verify_tls is True


# -- the adapter -------------------------------------------------------------------------------

SERVICE = ScimProvider(models=(User, Group))


def test_the_adapter_sends_scim_requests_over_the_httpx_client_it_is_given(
    idp: LocalIdentityProvider,
) -> None:
    seen: list[httpx.Request] = []
    headers = {"Authorization": f"Bearer {idp.token}"}
    with httpx.Client(
        base_url=idp.base_url, headers=headers, event_hooks={"request": [seen.append]}
    ) as http:
        scim = HttpxSCIMClient(http, provider=SERVICE)
        created = scim.create(User(user_name="ada"))
        found = scim.query(User, query_parameters=SearchRequest(filter='userName eq "ada"'))

    assert isinstance(created, User)
    assert [u.id for u in found.resources or []] == [created.id]  # type: ignore[union-attr]
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/v2/Users"), ("GET", "/v2/Users")]
    assert seen[0].headers["Content-Type"] == "application/scim+json"
    assert all(r.headers["Accept"] == "application/scim+json" for r in seen)
    assert seen[1].url.params["filter"] == 'userName eq "ada"'


def test_the_adapter_refuses_an_endpoint_outside_its_base_url(idp: LocalIdentityProvider) -> None:
    elsewhere = ResourceType.from_resource(User).model_copy(
        update={"endpoint": "http://elsewhere.example/Users"}
    )
    with httpx.Client(base_url=idp.base_url) as http:
        scim = HttpxSCIMClient(
            http, provider=ScimProvider(models=(User,), resource_types=[elsewhere])
        )
        with pytest.raises(InvalidServiceDescriptionException):
            scim.query(User, query_parameters=SearchRequest(filter='userName eq "ada"'))
