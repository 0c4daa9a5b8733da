"""`email.send` against a real SMTP server (aiosmtpd on 127.0.0.1): what arrives, the
Message-ID every attempt shares, and how each of SMTP's answers is classified."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import ValidationError

from deployments.local_smtp import LocalMailbox
from deployments.net import free_port
from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    TransientFailure,
)
from quire.lifecycle.connectors.email import SmtpConnection, send

TENANT = uuid.uuid4()
PASSWORD = "s3cret-smtp-password"


def connection(port: int, **settings: Any) -> SmtpConnection:
    defaults: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "from_address": "Quire HR <hr@acme.test>",
        "starttls": False,
        "timeout": 5.0,
    }
    return SmtpConnection(**(defaults | settings))


def call(key: str = "run-1:welcome", timeout: float = 5.0, **params: Any) -> StepCall:
    defaults = {"to": ["Ann Lee <ann@acme.test>"], "subject": "Welcome", "body": "Hello Ann"}
    return StepCall(TENANT, key, defaults | params, timeout)


class Scripted:
    """An SMTP handler that answers what a test tells it to, and keeps what it accepts."""

    def __init__(self) -> None:
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply = "250 OK"
        self.data_delay = 0.0
        self.messages: list[Message] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.data_delay)
        if self.data_reply.startswith("250"):
            self.messages.append(message_from_bytes(envelope.content))
        return self.data_reply


def only_quire(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"quire",
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers the 535


@pytest.fixture
def mailbox() -> Iterator[LocalMailbox]:
    with LocalMailbox() as box:
        yield box


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, int]]:
    handler, port = Scripted(), free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=only_quire,
        auth_require_tls=False,
    )
    controller.start()
    yield handler, port
    controller.stop()


def test_a_message_arrives_with_its_subject_text_html_and_attachments(
    mailbox: LocalMailbox,
) -> None:
    attachment = {"filename": "plan.csv", "content_type": "text/csv", "content": "day,task\n"}
    binary = {"filename": "data.json", "content_type": "application/json", "content": "{}"}
    outcome = send(
        connection(mailbox.port),
        call(html="<p>Hello <b>Ann</b></p>", attachments=[attachment, binary]),
    )

    [message] = mailbox.messages
    assert message["From"] == "Quire HR <hr@acme.test>"
    assert message["To"] == "Ann Lee <ann@acme.test>"
    assert message["Subject"] == "Welcome"
    assert message["Message-ID"] == outcome.output["message_id"]
    assert message["Date"]
    parsed = message_from_bytes(message.as_bytes(), _class=EmailMessage, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().strip() == "Hello Ann"
    assert "<b>Ann</b>" in html.get_content()
    files = {part.get_filename(): part for part in parsed.iter_attachments()}
    assert files["plan.csv"].get_content() == "day,task\n"
    assert files["data.json"].get_content_type() == "application/json"
    assert files["data.json"].get_content() == b"{}"
    assert outcome.undo is None
    assert outcome.output["refused"] == {}


def test_one_address_is_accepted_in_place_of_a_list(mailbox: LocalMailbox) -> None:
    send(connection(mailbox.port), call(to="ann@acme.test"))

    [message] = mailbox.messages
    assert message["To"] == "ann@acme.test"


def test_every_attempt_of_one_step_carries_the_same_message_id(mailbox: LocalMailbox) -> None:
    first = send(connection(mailbox.port), call(key="run-1:welcome"))
    again = send(connection(mailbox.port), call(key="run-1:welcome"))
    other = send(connection(mailbox.port), call(key="run-2:welcome"))

    ids = [message["Message-ID"] for message in mailbox.messages]
    assert ids == [first.output["message_id"]] * 2 + [other.output["message_id"]]
    assert first.output == again.output
    assert other.output["message_id"] != first.output["message_id"]
    assert first.output["message_id"].endswith("@acme.test>")


def test_a_refused_connection_is_transient() -> None:
    with pytest.raises(TransientFailure) as failure:
        send(connection(free_port()), call())

    assert failure.value.provider is Provider.EMAIL
    assert "could not be reached" in failure.value.detail


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("451 4.7.1 Greylisted, try again later", TransientFailure),
        ("452 4.2.2 Mailbox full", TransientFailure),
        ("550 5.1.1 No such user", PermanentFailure),
        ("553 5.1.3 Bad address", PermanentFailure),
    ],
)
def test_a_recipient_refused_with_4xx_is_transient_and_with_5xx_permanent(
    scripted: tuple[Scripted, int], reply: str, kind: type[Exception]
) -> None:
    handler, port = scripted
    handler.rcpt_replies["ann@acme.test"] = reply

    with pytest.raises(kind) as failure:
        send(connection(port), call())

    assert reply.split()[0] in str(failure.value)
    assert handler.messages == []


@pytest.mark.parametrize(
    ("reply", "kind"),
    [("451 4.3.0 Temporary failure", TransientFailure), ("554 5.7.1 Rejected", PermanentFailure)],
)
def test_a_message_refused_at_data_is_classified_by_its_reply_code(
    scripted: tuple[Scripted, int], reply: str, kind: type[Exception]
) -> None:
    handler, port = scripted
    handler.data_reply = reply

    with pytest.raises(kind, match=reply.split()[0]):
        send(connection(port), call())


def test_one_refused_recipient_among_accepted_ones_is_reported_not_failed(
    scripted: tuple[Scripted, int],
) -> None:
    handler, port = scripted
    handler.rcpt_replies["gone@acme.test"] = "550 5.1.1 No such user"

    outcome = send(connection(port), call(to=["ann@acme.test", "gone@acme.test"]))

    assert len(handler.messages) == 1
    assert outcome.output["refused"] == {"gone@acme.test": "550 5.1.1 No such user"}


def test_a_server_that_does_not_answer_within_the_steps_budget_is_transient(
    scripted: tuple[Scripted, int],
) -> None:
    handler, port = scripted
    handler.data_delay = 3.0

    with pytest.raises(TransientFailure, match=r"did not answer within 0\.3 s"):
        send(connection(port, timeout=30.0), call(timeout=0.3))


def test_a_login_reaches_a_server_that_asks_for_one(scripted: tuple[Scripted, int]) -> None:
    handler, port = scripted

    send(connection(port, user="quire", password=PASSWORD), call())

    assert len(handler.messages) == 1


def test_a_refused_login_is_permanent_and_its_detail_holds_no_password(
    scripted: tuple[Scripted, int],
) -> None:
    handler, port = scripted

    with pytest.raises(PermanentFailure) as failure:
        send(connection(port, user="quire", password="wrong-" + PASSWORD), call())

    assert "535" in failure.value.detail
    assert PASSWORD not in str(failure.value)
    assert handler.messages == []


def test_asking_for_starttls_from_a_server_without_it_is_permanent(mailbox: LocalMailbox) -> None:
    with pytest.raises(PermanentFailure, match="STARTTLS"):
        send(connection(mailbox.port, starttls=True), call())

    assert mailbox.messages == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"subject": None}, "subject"),
        ({"subject": "Hi\r\nBcc: everyone@acme.test"}, "subject"),
        ({"to": []}, "to"),
        ({"to": ["not an address"]}, "to.0"),
        ({"to": "ann@acme.test, bob@acme.test"}, "to.0"),
        ({"attachments": [{"filename": "../x.txt", "content": "x"}]}, "attachments.0.filename"),
        ({"attachments": [{"filename": "x", "content_type": "bad", "content": ""}]}, "attachments"),
        ({"cc": ["bob@acme.test"]}, "cc"),
    ],
)
def test_bad_parameters_are_permanent_and_name_the_field(
    mailbox: LocalMailbox, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(PermanentFailure, match=f"bad parameters: {field}"):
        send(connection(mailbox.port), call(**params))

    assert mailbox.messages == []


def test_a_login_needs_both_a_user_and_a_password() -> None:
    with pytest.raises(ValidationError, match="both user and password"):
        connection(25, user="quire")
    with pytest.raises(ValidationError, match="both user and password"):
        connection(25, password="x")
    with pytest.raises(ValidationError, match="from_address"):
        connection(25, from_address="nobody")
