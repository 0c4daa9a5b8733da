"""The `email.send` step: one message over SMTP, from the tenant's own mail server.

Why stdlib `smtplib` and not `aiosmtplib`: every step kind is a plain synchronous function that
the executor runs in a worker thread (Prefect runs sync tasks in threads), and some of those
threads already have an event loop of their own, in which `asyncio.run` refuses to start.
`smtplib` blocks only the thread it runs in, needs no loop, and is what `quire/mail.py` already
uses for Quire's own mail, so both senders fail in the same, known ways.

Idempotency: the Message-ID is derived from `call.idempotency_key`, so a resend after an answer
that was lost (the server took the message, the connection then broke) carries the same
Message-ID, and receivers and mail clients that deduplicate by it show one message. SMTP itself
cannot do better: a message, once handed over, cannot be recalled, so this step has no undo.

Failures, as SMTP means them: a 4xx reply ("try again later", 451 greylisting, 421 closing),
a refused or timed-out connection or a dropped one are transient; a 5xx reply (550 no such
user, 535 bad credentials, 554 rejected), a server without STARTTLS when it is asked for, a TLS
certificate that does not verify, and bad parameters are permanent. Details name the server's
reply, never the password.

The calendar connector sends its invitations through `compose` and `deliver` here; documents,
chat and AI use `parse_params` (it belongs in `base.py` one day: every connector parses its
parameters the same way).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    StepOutcome,
    TransientFailure,
)
from quire.schemas import Input

_ADDR = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_FILENAME = re.compile(r"^[^\\/\r\n\t\x00]{1,200}$")

Params = TypeVar("Params", bound=BaseModel)


def parse_params(model: type[Params], call: StepCall, provider: Provider) -> Params:
    """The step's parameters as `model`, or a PermanentFailure naming each bad field.

    The detail names fields and what is wrong with them, never the values (a rendered parameter
    may hold personal data that has no business in an error shown to admins)."""
    try:
        return model.model_validate(dict(call.params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'params'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise PermanentFailure(provider, f"bad parameters: {problems}") from None


def mailbox(value: str) -> str:
    """One address, plain (`ann@example.com`) or with a name (`Ann Lee <ann@example.com>`),
    returned in its canonical header form; a list, a line break or a missing `@` is refused."""
    if not isinstance(value, str) or any(ch in value for ch in "\r\n\x00"):
        raise ValueError("an address must be one line of text")
    found = getaddresses([value])
    if len(found) != 1 or not _ADDR.match(found[0][1]):
        raise ValueError("not one e-mail address (quote a display name that holds a comma)")
    return formataddr(found[0])


def address_of(mailbox_text: str) -> str:
    """The bare address (`ann@example.com`) of a mailbox `mailbox` accepted."""
    return getaddresses([mailbox_text])[0][1]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _one_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must be one line (no line breaks)")
    return value


Mailbox = Annotated[str, AfterValidator(mailbox)]
Recipients = Annotated[list[Mailbox], BeforeValidator(_one_or_many), Field(min_length=1)]
OneLine = Annotated[str, AfterValidator(_one_line)]


class SmtpConnection(Input):
    """A tenant's SMTP server (also what the calendar connector sends invitations through)."""

    model_config = ConfigDict(hide_input_in_errors=True)  # a refused password is not echoed

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    from_address: Mailbox
    starttls: bool = True
    user: str | None = None
    password: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _login_is_complete(self) -> SmtpConnection:
        if bool(self.user) != bool(self.password and self.password.get_secret_value()):
            raise ValueError("a login needs both user and password (or neither)")
        return self


class Attachment(Input):
    filename: Annotated[str, Field(pattern=_FILENAME.pattern)]
    content_type: Annotated[str, Field(pattern=_CONTENT_TYPE.pattern)] = "text/plain"
    content: str


class SendParams(Input):
    """`email.send`'s parameters."""

    to: Recipients
    subject: OneLine = Field(max_length=998)
    body: str
    html: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)


@dataclass(frozen=True)
class Alternative:
    """Another rendering of the body, beside text and HTML (an invitation's text/calendar)."""

    content_type: str
    content: str
    params: Mapping[str, str] = field(default_factory=dict)


def message_id(idempotency_key: str, from_address: str, purpose: str = "email") -> str:
    """The same `<...@domain>` for every attempt of one step (RFC 5322 msg-id syntax: the key's
    digest, since a key may hold characters a msg-id may not)."""
    digest = hashlib.sha256(f"quire:{purpose}:{idempotency_key}".encode()).hexdigest()[:40]
    domain = address_of(from_address).rpartition("@")[2]
    return f"<{digest}@{domain}>"


def compose(
    connection: SmtpConnection,
    *,
    to: Sequence[str],
    subject: str,
    body: str,
    msgid: str,
    html: str | None = None,
    alternatives: Sequence[Alternative] = (),
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    """The message: text, then HTML and any other alternative, then the attachments."""
    message = EmailMessage()
    message["From"] = connection.from_address
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = msgid
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for alternative in alternatives:
        maintype, subtype = alternative.content_type.split("/", 1)
        if maintype != "text":
            raise ValueError(f"an alternative must be text/*, not {alternative.content_type}")
        message.add_alternative(
            alternative.content, subtype=subtype, params=dict(alternative.params)
        )
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        if maintype == "text":
            message.add_attachment(
                attachment.content, subtype=subtype, filename=attachment.filename
            )
        else:
            message.add_attachment(
                attachment.content.encode(), maintype, subtype, filename=attachment.filename
            )
    return message


def _reply(code: int, text: bytes | str) -> str:
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(said.split())}"[:300]


def _scrub(detail: str, connection: SmtpConnection) -> str:
    secret = connection.password.get_secret_value() if connection.password else ""
    return detail.replace(secret, "***") if secret else detail


def _failure(
    provider: Provider, connection: SmtpConnection, code: int, detail: str
) -> TransientFailure | PermanentFailure:
    """SMTP's own rule: 4xx is "try again later", anything else is a refusal."""
    kind = TransientFailure if 400 <= code < 500 else PermanentFailure
    return kind(provider, _scrub(detail, connection))


def _exchange(
    connection: SmtpConnection, message: EmailMessage, recipients: Sequence[str], timeout: float
) -> dict[str, tuple[int, bytes]]:
    """One SMTP session. Not `with smtplib.SMTP(...)`: its exit sends QUIT and raises on an odd
    reply, which would fail a message the server had already accepted (and a retry would send
    it twice). Here QUIT is a courtesy once the message is in, and the socket is always closed."""
    smtp = smtplib.SMTP(timeout=timeout)
    try:
        code, greeting = smtp.connect(connection.host, connection.port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, greeting)
        if connection.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if connection.user and connection.password:
            smtp.login(connection.user, connection.password.get_secret_value())
        refused = smtp.send_message(
            message, from_addr=address_of(connection.from_address), to_addrs=list(recipients)
        )
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        return refused
    finally:
        smtp.close()


def deliver(
    connection: SmtpConnection,
    message: EmailMessage,
    recipients: Sequence[str],
    *,
    provider: Provider,
    timeout: float,
) -> dict[str, str]:
    """Hand `message` to the server for `recipients` (bare addresses); returns the recipients
    the server refused while accepting others (`{address: "550 ..."}`: the message went out to
    the rest, so this is not a failure to retry)."""
    server = f"the SMTP server {connection.host}:{connection.port}"
    try:
        refused = _exchange(connection, message, recipients, timeout)
    except smtplib.SMTPRecipientsRefused as exc:
        replies = {rcpt: _reply(code, text) for rcpt, (code, text) in exc.recipients.items()}
        worst = min(code for code, _ in exc.recipients.values())  # any 4xx: worth retrying
        listed = "; ".join(f"{rcpt}: {reply}" for rcpt, reply in replies.items())
        detail = f"{server} refused every recipient ({listed})"
        raise _failure(provider, connection, worst, detail) from None
    except smtplib.SMTPResponseException as exc:
        reply = _reply(exc.smtp_code, exc.smtp_error)
        raise _failure(provider, connection, exc.smtp_code, f"{server} answered {reply}") from None
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib reports a reply that timed out as a disconnection; the timeout is its cause.
        late = isinstance(exc.__context__, TimeoutError)
        detail = f"did not answer within {timeout:g} s" if late else "closed the connection"
        raise TransientFailure(provider, f"{server} {detail}") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentFailure(provider, f"{server} does not support it: {exc}") from None
    except smtplib.SMTPException as exc:  # "no suitable authentication method", ...
        raise PermanentFailure(provider, _scrub(f"{server}: {exc}", connection)) from None
    except ssl.SSLCertVerificationError as exc:
        detail = f"{server}'s TLS certificate was not accepted: {exc.verify_message}"
        raise PermanentFailure(provider, detail) from None
    except TimeoutError:
        raise TransientFailure(provider, f"{server} did not answer within {timeout:g} s") from None
    except OSError as exc:  # refused, unreachable, reset, a name that does not resolve
        reason = exc.strerror or type(exc).__name__
        raise TransientFailure(provider, f"{server} could not be reached: {reason}") from None
    return {rcpt: _reply(code, text) for rcpt, (code, text) in refused.items()}


def budget(connection: SmtpConnection, call: StepCall) -> float:
    """Seconds for each SMTP exchange: the connection's timeout, within the step's budget."""
    return min(connection.timeout, call.timeout_seconds)


def send(connection: SmtpConnection, call: StepCall) -> StepOutcome:
    """`email.send`: the message to `to`; output `{"message_id", "refused"}` (no undo)."""
    params = parse_params(SendParams, call, Provider.EMAIL)
    msgid = message_id(call.idempotency_key, connection.from_address)
    message = compose(
        connection,
        to=params.to,
        subject=params.subject,
        body=params.body,
        html=params.html,
        attachments=params.attachments,
        msgid=msgid,
    )
    recipients = [address_of(rcpt) for rcpt in params.to]
    refused = deliver(
        connection, message, recipients, provider=Provider.EMAIL, timeout=budget(connection, call)
    )
    return StepOutcome(output={"message_id": msgid, "refused": refused}, undo=None)
