"""`calendar.invite` and its compensation `calendar.cancel`, sent to a real SMTP server
(aiosmtpd) and read back with icalendar, as a calendar client would read them."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from typing import Any

import pytest
from icalendar import Calendar, Event

from deployments.local_smtp import LocalMailbox
from deployments.net import free_port
from quire.lifecycle.connectors.base import (
    PermanentFailure,
    Provider,
    StepCall,
    TransientFailure,
)
from quire.lifecycle.connectors.calendar import cancel, invite
from quire.lifecycle.connectors.email import SmtpConnection

TENANT = uuid.uuid4()
START = "2025-03-03T09:00:00+01:00"
END = "2025-03-03T10:30:00+01:00"


def connection(port: int) -> SmtpConnection:
    return SmtpConnection(
        host="127.0.0.1", port=port, from_address="hr@acme.test", starttls=False, timeout=5.0
    )


def call(key: str = "run-1:first-day", **params: Any) -> StepCall:
    defaults = {
        "to": ["Ann Lee <ann@acme.test>", "buddy@acme.test"],
        "organizer": "Hanna Ruiz <hanna@acme.test>",
        "summary": "First day: welcome and setup",
        "description": "Meet at reception.\nBring your ID.",
        "location": "HQ, room 4",
        "start": START,
        "end": END,
    }
    return StepCall(TENANT, key, {k: v for k, v in (defaults | params).items() if v is not None})


def invitation(message: Message) -> tuple[Calendar, Calendar, EmailMessage]:
    """The text/calendar alternative and the .ics attachment of one mail, parsed."""
    parsed = message_from_bytes(message.as_bytes(), _class=EmailMessage, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    inline = next(p for p in parsed.walk() if p.get_content_type() == "text/calendar")
    [attached] = list(parsed.iter_attachments())
    assert inline.get_param("method") == Calendar.from_ical(inline.get_content())["METHOD"]
    return (
        Calendar.from_ical(inline.get_content()),
        Calendar.from_ical(attached.get_content()),
        attached,
    )


def the_event(calendar: Calendar) -> Event:
    [event] = calendar.events
    return event


@pytest.fixture
def mailbox() -> Iterator[LocalMailbox]:
    with LocalMailbox() as box:
        yield box


def test_an_invitation_arrives_as_a_request_for_the_event(mailbox: LocalMailbox) -> None:
    outcome = invite(connection(mailbox.port), call())

    [message] = mailbox.messages
    assert message["Subject"] == "Invitation: First day: welcome and setup"
    assert message["To"] == "Ann Lee <ann@acme.test>, buddy@acme.test"
    inline, attached, attachment = invitation(message)
    assert attachment.get_filename() == "invite.ics"
    assert inline.to_ical() == attached.to_ical()
    assert inline["METHOD"] == "REQUEST"
    event = the_event(inline)
    assert str(event["UID"]) == outcome.output["uid"]
    assert event.start == dt.datetime(2025, 3, 3, 8, 0, tzinfo=dt.UTC)
    assert event.end == dt.datetime(2025, 3, 3, 9, 30, tzinfo=dt.UTC)
    assert event["SUMMARY"] == "First day: welcome and setup"
    assert event["DESCRIPTION"] == "Meet at reception.\nBring your ID."
    assert event["LOCATION"] == "HQ, room 4"
    assert event["SEQUENCE"] == 0
    assert event["STATUS"] == "CONFIRMED"
    assert str(event["ORGANIZER"]) == "mailto:hanna@acme.test"
    assert event["ORGANIZER"].params["CN"] == "Hanna Ruiz"
    attendees = {str(a): a.params for a in event.attendees}
    assert set(attendees) == {"mailto:ann@acme.test", "mailto:buddy@acme.test"}
    assert attendees["mailto:ann@acme.test"]["CN"] == "Ann Lee"
    assert attendees["mailto:ann@acme.test"]["RSVP"] == "TRUE"


def test_every_attempt_of_one_step_sends_the_same_uid(mailbox: LocalMailbox) -> None:
    first = invite(connection(mailbox.port), call(key="run-1:first-day"))
    again = invite(connection(mailbox.port), call(key="run-1:first-day"))
    other = invite(connection(mailbox.port), call(key="run-2:first-day"))

    uids = [str(the_event(invitation(m)[0])["UID"]) for m in mailbox.messages]
    assert uids == [first.output["uid"], first.output["uid"], other.output["uid"]]
    assert again.output == first.output
    assert other.output["uid"] != first.output["uid"]
    assert [m["Message-ID"] for m in mailbox.messages][:2] == [first.output["message_id"]] * 2


def test_an_all_day_event_lasts_from_its_date_to_the_next_day(mailbox: LocalMailbox) -> None:
    outcome = invite(connection(mailbox.port), call(start=None, end=None, date="2025-03-03"))

    event = the_event(invitation(mailbox.messages[0])[0])
    assert event.start == dt.date(2025, 3, 3)
    assert event.end == dt.date(2025, 3, 4)
    assert event["DTSTART"].params["VALUE"] == "DATE"
    assert outcome.undo is not None
    assert outcome.undo["date"] == "2025-03-03"
    assert "start" not in outcome.undo


def test_cancelling_sends_the_same_uid_cancelled_with_the_next_sequence(
    mailbox: LocalMailbox,
) -> None:
    invited = invite(connection(mailbox.port), call())
    assert invited.undo is not None
    undo = json.loads(json.dumps(invited.undo))  # as the saga log keeps it

    cancelled = cancel(connection(mailbox.port), StepCall(TENANT, "run-1:first-day:undo", undo))

    message = mailbox.messages[1]
    assert message["Subject"] == "Cancelled: First day: welcome and setup"
    inline, _, attachment = invitation(message)
    assert attachment.get_filename() == "cancel.ics"
    assert inline["METHOD"] == "CANCEL"
    event = the_event(inline)
    assert str(event["UID"]) == invited.output["uid"]
    assert event["SEQUENCE"] == 1
    assert event["STATUS"] == "CANCELLED"
    assert event.start == dt.datetime(2025, 3, 3, 8, 0, tzinfo=dt.UTC)
    assert {str(a) for a in event.attendees} == {"mailto:ann@acme.test", "mailto:buddy@acme.test"}
    assert cancelled.output["sequence"] == 1
    assert cancelled.undo is None


def test_the_undo_record_holds_what_a_cancellation_needs(mailbox: LocalMailbox) -> None:
    outcome = invite(connection(mailbox.port), call())

    assert outcome.undo == {
        "uid": outcome.output["uid"],
        "to": ["Ann Lee <ann@acme.test>", "buddy@acme.test"],
        "organizer": "Hanna Ruiz <hanna@acme.test>",
        "summary": "First day: welcome and setup",
        "start": START,
        "end": END,
        "sequence": 0,
    }


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"start": "2025-03-03T09:00:00"}, "timezone"),
        ({"end": "2025-03-03T08:00:00+01:00"}, "end must be after start"),
        ({"date": "2025-03-03"}, "not both"),
        ({"end": None}, "give start and end"),
        ({"organizer": "hanna"}, "organizer"),
        ({"summary": ""}, "summary"),
    ],
)
def test_bad_times_and_people_are_permanent_failures(
    mailbox: LocalMailbox, params: dict[str, Any], problem: str
) -> None:
    with pytest.raises(PermanentFailure, match=problem) as failure:
        invite(connection(mailbox.port), call(**params))

    assert failure.value.provider is Provider.CALENDAR
    assert mailbox.messages == []


def test_smtp_failures_count_against_the_calendar_provider() -> None:
    with pytest.raises(TransientFailure) as failure:
        invite(connection(free_port()), call())

    assert failure.value.provider is Provider.CALENDAR
