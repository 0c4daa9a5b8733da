"""Identity steps over SCIM 2.0 (RFC 7643/7644): accounts, group membership, deactivation.

Each step kind is a plain synchronous function `(ScimConnection, StepCall) -> StepOutcome` (see
`base.py`). Requests are built and answers checked by scim2-client with scim2-models' `User`,
`Group`, `PatchOp` and `SearchRequest`, sent over httpx through `scim_httpx.HttpxSCIMClient`.

Why the steps look the way they do:

- **No account is created twice.** `create_user` stores the step's idempotency key as the
  account's `externalId` and looks the `userName` up before POSTing: an account carrying our key
  is the one an earlier attempt created before its answer was lost, and is returned as if just
  made; an account carrying anything else is someone else's, and the step fails for good rather
  than adopt it (its compensation would then delete a stranger). A 409 on POST is settled the
  same way, by looking again.
- **Undo records only what a step changed**: the groups it actually joined or left, never the
  ones the user was already (not) in.
- **Failures are classified here**, the one place that knows the protocol: timeouts, refused
  connections, 5xx and 429 are `TransientFailure`; other 4xx and SCIM error bodies are
  `PermanentFailure`. A failure's detail never carries the bearer token.
- **`call.timeout_seconds` is the whole step's budget**, not each request's: a step of several
  requests against a slow provider still ends in time.

The parameter models (`CreateUserParams`, `UserIdParams`, `GroupsParams`, `DeactivateParams`)
are public so that a playbook's parameters can be checked before it runs.

Each call opens its own `httpx.Client` (TLS contexts are built once per process and shared), so
the functions are safe to call from many threads at once and hold no connection between steps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import httpx
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from scim2_client import RequestNetworkException, SCIMClientException
from scim2_models import (
    Email,
    EnterpriseUser,
    Group,
    ListResponse,
    Name,
    NoTargetException,
    NotFoundException,
    PatchOp,
    PatchOperation,
    ResourceType,
    SCIMException,
    ScimProvider,
    SearchRequest,
    UniquenessException,
    User,
)

from quire.lifecycle.connectors.base import (
    ConnectorFailure,
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
    TransientFailure,
)
from quire.lifecycle.connectors.scim_httpx import HttpxSCIMClient

_IDENTITY = Provider.IDENTITY

# The service as RFC 7643 describes it: /Users (with the enterprise extension a provider may
# add) and /Groups. Stated rather than discovered, which would cost three requests per step.
_SERVICE = ScimProvider(
    models=(User, EnterpriseUser, Group),
    resource_types=(
        ResourceType.from_resource(User[EnterpriseUser]),
        ResourceType.from_resource(Group),
    ),
)
_User = cast("type[User[Any]]", _SERVICE.model_for("User"))


class ScimConnection(BaseModel):
    """Where a tenant's identity provider is and how to authenticate to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: AnyHttpUrl  # the SCIM service root, e.g. https://idp.example/scim/v2
    bearer_token: SecretStr | None = None
    verify_tls: bool = True


# -- parameters ------------------------------------------------------------------------------


class _Params(BaseModel):
    """A step's rendered parameters. Unknown names are refused (a playbook's typo should not
    be ignored), and an empty string counts as absent (a template rendering a missing field)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any, info: ValidationInfo) -> Any:
        if not (isinstance(value, str) and not value.strip()):
            return value
        if info.field_name and cls.model_fields[info.field_name].is_required():
            raise ValueError("must not be empty")
        return None


def _one_or_many(value: Any) -> Any:
    """A single string where a list is expected is a list of one (a template's rendering)."""
    return [value] if isinstance(value, str) else value


class CreateUserParams(_Params):
    """`create_user`: `emails` (or a single `email`) become the account's addresses, the first
    one primary; `given_name`/`family_name` its `name`."""

    user_name: str = Field(min_length=1)
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    emails: list[EmailStr] | None = None
    email: EmailStr | None = None
    active: bool = True

    _emails_listed = field_validator("emails", mode="before")(_one_or_many)


class UserIdParams(_Params):
    """`reactivate`."""

    user_id: str = Field(min_length=1)


class DeleteParams(_Params):
    """`delete_user`: the account's id, or (undoing a create whose answer never came) the
    externalId its create stamped, `create_user`'s idempotency key."""

    user_id: str | None = Field(default=None, min_length=1)
    external_id: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> DeleteParams:
        if (self.user_id is None) == (self.external_id is None):
            raise ValueError("name the account by user_id or by external_id (one of them)")
        return self


class GroupsParams(_Params):
    """`add_to_groups` and `remove_from_groups`: the account by its id at the provider or by
    its userName (HR knows the name, rarely the provider's id), and group displayNames."""

    user_id: str | None = Field(default=None, min_length=1)
    user_name: str | None = Field(default=None, min_length=1)
    groups: list[str]

    _groups_listed = field_validator("groups", mode="before")(_one_or_many)

    @field_validator("groups")
    @classmethod
    def _named(cls, groups: list[str]) -> list[str]:
        if any(not name.strip() for name in groups):
            raise ValueError("a group name is empty")
        return list(dict.fromkeys(name.strip() for name in groups))

    @model_validator(mode="after")
    def _one(self) -> GroupsParams:
        if (self.user_id is None) == (self.user_name is None):
            raise ValueError("name the account by user_id or by user_name (one of them)")
        return self


class DeactivateParams(_Params):
    """`deactivate`: the account by id, or else found by userName."""

    user_id: str | None = Field(default=None, min_length=1)
    user_name: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _someone(self) -> DeactivateParams:
        if self.user_id is None and self.user_name is None:
            raise ValueError("either user_id or user_name is required")
        return self


P = TypeVar("P", bound=_Params)
A = ParamSpec("A")
R = TypeVar("R")


def _params(model: type[P], call: StepCall, kind: str) -> P:
    try:
        return model.model_validate(dict(call.params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise PermanentFailure(_IDENTITY, f"{kind}: bad parameters: {problems}") from None


# -- sessions and failure classification ------------------------------------------------------


@cache
def _tls(verify: bool) -> Any:
    """One SSL context per process and mode: building one loads the CA bundle (milliseconds),
    and a context is safe to share between clients and threads."""
    return httpx.create_ssl_context(verify=verify)


class _BudgetedClient(HttpxSCIMClient):
    """Every request's timeout is what is left of the step's budget."""

    def __init__(self, client: httpx.Client, deadline: float) -> None:
        super().__init__(client, provider=_SERVICE)
        self.deadline = deadline

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        left = self.deadline - time.monotonic()
        if left <= 0:
            spent = RequestNetworkException(message="the step's time budget is spent")
            raise spent from httpx.TimeoutException("the step's time budget is spent")
        kwargs.setdefault("timeout", left)
        return super().request(method, url, **kwargs)


@contextmanager
def _session(connection: ScimConnection, timeout: float, action: str) -> Iterator[_BudgetedClient]:
    """A SCIM client for one step, whose failures leave as Transient/PermanentFailure."""
    if not timeout > 0:
        raise PermanentFailure(_IDENTITY, f"{action}: the timeout must be positive, got {timeout}")
    token = connection.bearer_token
    try:
        with httpx.Client(
            base_url=str(connection.base_url),
            headers={"Authorization": f"Bearer {token.get_secret_value()}"} if token else None,
            timeout=timeout,
            verify=_tls(connection.verify_tls),
            follow_redirects=False,
        ) as http:
            yield _BudgetedClient(http, time.monotonic() + timeout)
    except (SCIMClientException, SCIMException) as exc:
        raise _classify(exc, action, timeout) from None


def _sealed(
    step: Callable[Concatenate[ScimConnection, A], R],
) -> Callable[Concatenate[ScimConnection, A], R]:
    """A public function whose failures carry no secret: the token is masked in the detail
    (should a provider echo it back), and the chain of exceptions under the failure is cut —
    they hold httpx requests, whose headers carry the token, and a failure may be logged or
    persisted with its chain."""

    @wraps(step)
    def sealed(connection: ScimConnection, /, *args: A.args, **kwargs: A.kwargs) -> R:
        try:
            return step(connection, *args, **kwargs)
        except ConnectorFailure as failure:
            _redact(failure, connection)
            failure.__cause__ = failure.__context__ = None
            failure.__suppress_context__ = True
            raise

    return sealed


def _classify(exc: Exception, action: str, timeout: float) -> ConnectorFailure:
    """The contract's reading of whatever scim2-client (or httpx under it) raised."""
    if isinstance(exc, RequestNetworkException):
        cause = exc.__cause__
        if isinstance(cause, httpx.TimeoutException):
            return TransientFailure(_IDENTITY, f"{action}: no answer within {timeout:g} s")
        if isinstance(cause, httpx.ConnectError):
            return TransientFailure(_IDENTITY, f"{action}: cannot connect ({cause})")
        return TransientFailure(_IDENTITY, f"{action}: network error ({cause or exc})")
    if isinstance(exc, SCIMException):  # the server's SCIM error body, or a request we refused
        status = int(exc.status or 400)
        answered = getattr(exc, "source", None) is not None
        said = f"the identity provider answered {status}" if answered else "refused before sending"
        detail = f"{action}: {said}: {exc.detail}"
        return _by_status(status, detail)
    source = getattr(exc, "source", None)
    if isinstance(source, httpx.Response):  # a status without a SCIM body, or a bad payload
        status = source.status_code
        return _by_status(status, f"{action}: the identity provider answered {status}: {exc}")
    return PermanentFailure(_IDENTITY, f"{action}: {exc}")


def _by_status(status: int, detail: str) -> ConnectorFailure:
    if status >= 500 or status == 429:
        return TransientFailure(_IDENTITY, detail)
    return PermanentFailure(_IDENTITY, detail)


def _redact(failure: ConnectorFailure, connection: ScimConnection) -> None:
    """Mask the bearer token in a failure's text, in place."""
    secret = connection.bearer_token.get_secret_value() if connection.bearer_token else ""
    if secret and secret in failure.detail:
        failure.detail = failure.detail.replace(secret, "***")
        failure.args = tuple(
            arg.replace(secret, "***") if isinstance(arg, str) else arg for arg in failure.args
        )


# -- lookups ---------------------------------------------------------------------------------


def _literal(value: str) -> str:
    """A SCIM filter string literal (RFC 7644 §3.4.2.2: JSON string syntax)."""
    return json.dumps(value, ensure_ascii=False)


def _search(scim: _BudgetedClient, model: type[Any], scim_filter: str) -> list[Any]:
    found = scim.query(model, query_parameters=SearchRequest(filter=scim_filter))
    return list(cast("ListResponse[Any]", found).resources or [])


def _users_named(scim: _BudgetedClient, user_name: str) -> list[User[Any]]:
    return _search(scim, _User, f"userName eq {_literal(user_name)}")


def _groups_named(
    scim: _BudgetedClient, names: list[str], action: str, *, all_must_exist: bool
) -> dict[str, Group]:
    """Each named group (by displayName) that exists. With `all_must_exist`, a missing name
    fails the step before any change is made, naming every missing group; an ambiguous name
    (two groups share it) always does."""
    found: dict[str, Group] = {}
    for name in names:
        groups = _search(scim, Group, f"displayName eq {_literal(name)}")
        if len(groups) > 1:
            raise PermanentFailure(_IDENTITY, f"{action}: {len(groups)} groups are named {name!r}")
        if groups:
            found[name] = groups[0]
    missing = [name for name in names if name not in found]
    if missing and all_must_exist:
        listed = ", ".join(repr(name) for name in missing)
        raise PermanentFailure(_IDENTITY, f"{action}: no such group: {listed}")
    return found


def _is_member(group: Group, user_id: str) -> bool:
    return any(member.value == user_id for member in group.members or [])


def _described(user: User[Any]) -> dict[str, Any]:
    return {
        "user_id": user.id,
        "user_name": user.user_name,
        "external_id": user.external_id,
        "active": user.active,
    }


@_sealed
def find_user(
    connection: ScimConnection, user_name: str, timeout: float = 10.0
) -> dict[str, Any] | None:
    """The account named `user_name` (userName is case-insensitive in SCIM), as
    `{"user_id", "user_name", "external_id", "active"}`, or None if there is none.
    Raises Transient/PermanentFailure like a step."""
    if not isinstance(user_name, str) or not user_name.strip():
        raise PermanentFailure(_IDENTITY, "find user: user_name must be a non-empty string")
    action = f"find user {user_name!r}"
    with _session(connection, timeout, action) as scim:
        users = _users_named(scim, user_name.strip())
    return _described(users[0]) if users else None


# -- steps -----------------------------------------------------------------------------------


def _created(user: User[Any]) -> StepOutcome:
    return StepOutcome(
        output={"user_id": user.id, "user_name": user.user_name}, undo={"user_id": user.id}
    )


def _settle_existing(users: list[User[Any]], key: str, action: str) -> StepOutcome | None:
    """An earlier attempt's account (ours: return it), someone else's (refuse), or none."""
    if not users:
        return None
    user = users[0]
    if user.external_id == key:
        return _created(user)
    raise PermanentFailure(
        _IDENTITY,
        f"{action}: an account with this userName already exists (id {user.id}) and was not "
        "created by this run; it is left untouched",
    )


@_sealed
def create_user(connection: ScimConnection, call: StepCall) -> StepOutcome:
    """Create the account, exactly once per step (its externalId is the idempotency key).
    Output `{"user_id", "user_name"}`; undo `{"user_id"}` (for `delete_user`)."""
    params = _params(CreateUserParams, call, "create_user")
    action = f"create user {params.user_name!r}"
    addresses = list(
        dict.fromkeys([*(params.emails or []), *([params.email] if params.email else [])])
    )
    name = (
        Name(given_name=params.given_name, family_name=params.family_name)
        if params.given_name or params.family_name
        else None
    )
    user = _User(
        user_name=params.user_name,
        external_id=call.idempotency_key,
        name=name,
        display_name=params.display_name,
        emails=[Email(value=a, primary=i == 0) for i, a in enumerate(addresses)] or None,
        active=params.active,
    )
    with _session(connection, call.timeout_seconds, action) as scim:
        settled = _settle_existing(
            _users_named(scim, params.user_name), call.idempotency_key, action
        )
        if settled is not None:
            return settled
        try:
            created = scim.create(user)
        except UniquenessException as conflict:
            # Someone (or our own earlier attempt, answered late) took the userName meanwhile.
            settled = _settle_existing(
                _users_named(scim, params.user_name), call.idempotency_key, action
            )
            if settled is not None:
                return settled
            raise PermanentFailure(_IDENTITY, f"{action}: conflict: {conflict.detail}") from None
        return _created(cast("User[Any]", created))


@_sealed
def delete_user(connection: ScimConnection, call: StepCall) -> StepOutcome:
    """Delete the account (the compensation of `create_user`); one already gone counts as
    deleted. Output `{"user_id", "already_gone"}`."""
    params = _params(DeleteParams, call, "delete_user")
    action = f"delete user {params.user_id or params.external_id}"
    with _session(connection, call.timeout_seconds, action) as scim:
        if params.user_id is None:
            # A create that may have happened: the accounts it stamped, if any (only ours:
            # the externalId is a key no other account carries).
            found = _search(scim, _User, f"externalId eq {_literal(params.external_id)}")
            ids = [str(u.id) for u in found]
        else:
            ids = [params.user_id]
        gone = True
        for user_id in ids:
            try:
                scim.delete(_User, user_id)
                gone = False
            except NotFoundException:
                continue
    return StepOutcome(output={"user_id": ",".join(ids) or None, "already_gone": gone})


def _membership_patch(op: str, user_id: str) -> PatchOp[Group]:
    if op == "add":
        operation = PatchOperation[Group](op="add", path="members", value=[{"value": user_id}])
    else:
        operation = PatchOperation[Group](
            op="remove", path=f"members[value eq {_literal(user_id)}]"
        )
    return PatchOp[Group](operations=[operation])


def _change_membership(
    connection: ScimConnection, call: StepCall, kind: str, join: bool
) -> StepOutcome:
    params = _params(GroupsParams, call, kind)
    action = f"{kind} for user {params.user_id or repr(params.user_name)}"
    changed: list[str] = []
    with _session(connection, call.timeout_seconds, action) as scim:
        user_id = params.user_id
        if user_id is None:
            users = _users_named(scim, cast(str, params.user_name))
            if not users and join:
                raise PermanentFailure(_IDENTITY, f"{action}: no user named {params.user_name!r}")
            if not users:
                # No account, no memberships: nothing to remove, and no reason to fail an exit.
                missing = {"user_id": None, "groups": [], "missing_groups": []}
                return StepOutcome(output={**missing, "missing_user": True})
            user_id = cast(str, users[0].id)
        groups = _groups_named(scim, params.groups, action, all_must_exist=join)
        for name, group in groups.items():
            if _is_member(group, user_id) == join:
                continue  # already as asked: not ours to undo
            try:
                patch = _membership_patch("add" if join else "remove", user_id)
                scim.modify(Group, group.id, patch)
            except NoTargetException:
                continue  # left the group meanwhile
            changed.append(name)
    output: dict[str, Any] = {"user_id": user_id, "groups": changed}
    if not join:
        output["missing_groups"] = [name for name in params.groups if name not in groups]
        output["missing_user"] = False
    undo = {"user_id": user_id, "groups": changed} if changed else None
    return StepOutcome(output=output, undo=undo)


@_sealed
def add_to_groups(connection: ScimConnection, call: StepCall) -> StepOutcome:
    """Make the user (by `user_id`, or found by `user_name`) a member of each group
    (displayNames); the account and every group must exist, or nothing is changed. Output and
    undo `{"user_id", "groups"}`, by id even when named by userName (so the compensation does
    not look the name up again): the groups it actually joined (undo None if none: the user
    was in all of them already)."""
    return _change_membership(connection, call, "add_to_groups", join=True)


@_sealed
def remove_from_groups(connection: ScimConnection, call: StepCall) -> StepOutcome:
    """Take the user (by `user_id`, or found by `user_name`) out of each group (the
    compensation of `add_to_groups`, and an exit step). A group that does not exist holds no
    membership, so it is listed in `missing_groups` rather than failing a compensation or an
    exit; likewise an account that no user_name finds has no memberships to remove: the step
    succeeds with `missing_user` true, `user_id` None and nothing looked up or changed.
    Output `{"user_id", "groups", "missing_groups", "missing_user"}`; undo
    `{"user_id", "groups"}` by id: the groups it actually left (None if none)."""
    return _change_membership(connection, call, "remove_from_groups", join=False)


def _set_active(scim: _BudgetedClient, user_id: str, active: bool, action: str) -> None:
    patch = PatchOp[_User](
        operations=[PatchOperation[_User](op="replace", path="active", value=active)]
    )
    try:
        scim.modify(_User, user_id, patch)
    except NotFoundException:
        raise PermanentFailure(_IDENTITY, f"{action}: no user with id {user_id}") from None


@_sealed
def deactivate(connection: ScimConnection, call: StepCall) -> StepOutcome:
    """Set `active=false` on the user (by `user_id`, else found by `user_name`).
    Output `{"user_id"}`; undo `{"user_id"}` (for `reactivate`)."""
    params = _params(DeactivateParams, call, "deactivate")
    action = f"deactivate user {params.user_id or repr(params.user_name)}"
    with _session(connection, call.timeout_seconds, action) as scim:
        user_id = params.user_id
        if user_id is None:
            users = _users_named(scim, cast(str, params.user_name))
            if not users:
                raise PermanentFailure(_IDENTITY, f"{action}: no user named {params.user_name!r}")
            user_id = cast(str, users[0].id)
        _set_active(scim, user_id, False, action)
    return StepOutcome(output={"user_id": user_id}, undo={"user_id": user_id})


@_sealed
def reactivate(connection: ScimConnection, call: StepCall) -> StepOutcome:
    """Set `active=true` on the user (the compensation of `deactivate`). Output `{"user_id"}`."""
    params = _params(UserIdParams, call, "reactivate")
    action = f"reactivate user {params.user_id}"
    with _session(connection, call.timeout_seconds, action) as scim:
        _set_active(scim, params.user_id, True, action)
    return StepOutcome(output={"user_id": params.user_id})
