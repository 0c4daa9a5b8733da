"""The `calendar.invite` step and its compensation: an iCalendar invitation sent by email.

There is no calendar server to talk to: an invitation is an iTIP message (RFC 5546) carried by
mail (iMIP, RFC 6047), which every calendar client understands. The mail holds the event twice:
as a `text/calendar; method=REQUEST` alternative of the text (what Outlook and Gmail act on)
and as an `invite.ics` attachment (what a person can open by hand).

Idempotency: the event's UID is derived from `call.idempotency_key`, so a resend is the same
event to every calendar (an update of it, not a second meeting), and the mail's Message-ID is
derived from the same key (see `email.py`).

Undo: an invitation cannot be unsent, but it can be withdrawn. `cancel` sends the same UID
with `METHOD:CANCEL`, `STATUS:CANCELLED` and `SEQUENCE` one above the invitation's, which
calendars apply by removing the event. Its undo record holds everything the cancellation
needs (`uid`, `to`, `organizer`, `summary`, `start`/`end` or `date`, `sequence`), so it runs
from the saga log alone.

Times: `start` and `end` must carry an offset (a time without one means something else in every
time zone); they are written in UTC (`...Z`), which needs no VTIMEZONE. An all-day event is a
`date`, written as `VALUE=DATE` from that day to the next. Failures are those of SMTP, reported
as `Provider.CALENDAR` (its own breaker).
"""

from __future__ import annotations

import datetime as dt
from email.utils import getaddresses
from typing import Any, Literal

from icalendar import Calendar, Event, vCalAddress
from pydantic import AwareDatetime, Field, model_validator

from quire.lifecycle.connectors.base import Provider, StepCall, StepOutcome
from quire.lifecycle.connectors.email import (
    Alternative,
    Attachment,
    Mailbox,
    OneLine,
    Recipients,
    SmtpConnection,
    address_of,
    budget,
    compose,
    deliver,
    message_id,
    parse_params,
)
from quire.schemas import Input

PRODID = "-//Quire//Lifecycle//EN"


class _When(Input):
    """When the event is: `start` and `end` (with offsets), or an all-day `date`."""

    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    date: dt.date | None = None

    @model_validator(mode="after")
    def _one_kind_of_time(self) -> _When:
        timed = self.start is not None or self.end is not None
        if self.date is not None and timed:
            raise ValueError("give either start and end, or an all-day date, not both")
        if self.date is None and (self.start is None or self.end is None):
            raise ValueError("give start and end (ISO 8601 with an offset), or an all-day date")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def when_fields(self) -> dict[str, str]:
        """The time as the undo record keeps it (ISO 8601 strings)."""
        if self.date is not None:
            return {"date": self.date.isoformat()}
        start, end = self._timed()
        return {"start": start.isoformat(), "end": end.isoformat()}

    def span(self) -> tuple[dt.date | dt.datetime, dt.date | dt.datetime]:
        if self.date is not None:
            return self.date, self.date + dt.timedelta(days=1)
        start, end = self._timed()
        return start.astimezone(dt.UTC), end.astimezone(dt.UTC)

    def describe(self) -> str:
        if self.date is not None:
            return f"{self.date.isoformat()} (all day)"
        start, end = self._timed()
        return f"{start.isoformat()} to {end.isoformat()}"

    def _timed(self) -> tuple[dt.datetime, dt.datetime]:
        if self.start is None or self.end is None:  # validation ruled this out
            raise ValueError("an all-day event has no start and end times")
        return self.start, self.end


class InviteParams(_When):
    """`calendar.invite`'s parameters."""

    to: Recipients
    organizer: Mailbox | None = None  # None: the connection's sender organises it
    summary: OneLine = Field(min_length=1, max_length=500)
    description: str = ""
    location: OneLine = ""


class CancelParams(_When):
    """`calendar.cancel`'s parameters: the undo record `invite` returned."""

    uid: OneLine = Field(min_length=1, max_length=255)
    to: Recipients
    organizer: Mailbox
    summary: OneLine = Field(min_length=1, max_length=500)
    sequence: int = Field(ge=0)


def _cal_address(mailbox: str, **params: str) -> vCalAddress:
    name, addr = getaddresses([mailbox])[0]
    cal = vCalAddress(f"mailto:{addr}")
    if name:
        cal.params["CN"] = name
    cal.params.update(params)
    return cal


def _ical(
    method: Literal["REQUEST", "CANCEL"],
    when: _When,
    *,
    uid: str,
    sequence: int,
    to: list[str],
    organizer: str,
    summary: str,
    description: str = "",
    location: str = "",
) -> str:
    """One VCALENDAR holding one VEVENT, as text."""
    start, end = when.span()
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", dt.datetime.now(dt.UTC).replace(microsecond=0))
    event.add("sequence", sequence)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", summary)
    if description:
        event.add("description", description)
    if location:
        event.add("location", location)
    event.add("organizer", _cal_address(organizer))
    for attendee in to:
        event.add(
            "attendee",
            _cal_address(attendee, ROLE="REQ-PARTICIPANT", PARTSTAT="NEEDS-ACTION", RSVP="TRUE"),
        )
    event.add("status", "CONFIRMED" if method == "REQUEST" else "CANCELLED")
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", method)
    calendar.add_component(event)
    return calendar.to_ical().decode()


def _mail(
    connection: SmtpConnection,
    call: StepCall,
    method: Literal["REQUEST", "CANCEL"],
    *,
    to: list[str],
    subject: str,
    text: str,
    ics: str,
) -> str:
    """Send the iMIP mail: the text, the `text/calendar` alternative and the .ics file."""
    msgid = message_id(call.idempotency_key, connection.from_address)
    filename = "invite.ics" if method == "REQUEST" else "cancel.ics"
    message = compose(
        connection,
        to=to,
        subject=subject,
        body=text,
        msgid=msgid,
        alternatives=[Alternative("text/calendar", ics, {"method": method})],
        attachments=[Attachment(filename=filename, content_type="application/ics", content=ics)],
    )
    deliver(
        connection,
        message,
        [address_of(rcpt) for rcpt in to],
        provider=Provider.CALENDAR,
        timeout=budget(connection, call),
    )
    return msgid


def event_uid(idempotency_key: str, connection: SmtpConnection) -> str:
    """The event's UID: the same for every attempt of one step (`<digest>@<sender's domain>`)."""
    return message_id(idempotency_key, connection.from_address, purpose="calendar").strip("<>")


def invite(connection: SmtpConnection, call: StepCall) -> StepOutcome:
    """`calendar.invite`: output `{"uid", "message_id"}`; undo: what `cancel` needs."""
    params = parse_params(InviteParams, call, Provider.CALENDAR)
    organizer = params.organizer or connection.from_address
    uid = event_uid(call.idempotency_key, connection)
    ics = _ical(
        "REQUEST",
        params,
        uid=uid,
        sequence=0,
        to=params.to,
        organizer=organizer,
        summary=params.summary,
        description=params.description,
        location=params.location,
    )
    lines = [params.summary, "", f"When: {params.describe()}"]
    if params.location:
        lines.append(f"Where: {params.location}")
    if params.description:
        lines += ["", params.description]
    msgid = _mail(
        connection,
        call,
        "REQUEST",
        to=params.to,
        subject=f"Invitation: {params.summary}",
        text="\n".join(lines) + "\n",
        ics=ics,
    )
    undo: dict[str, Any] = {
        "uid": uid,
        "to": params.to,
        "organizer": organizer,
        "summary": params.summary,
        **params.when_fields(),
        "sequence": 0,
    }
    return StepOutcome(output={"uid": uid, "message_id": msgid}, undo=undo)


def cancel(connection: SmtpConnection, call: StepCall) -> StepOutcome:
    """`invite`'s compensation: the same event, cancelled (`SEQUENCE` + 1)."""
    params = parse_params(CancelParams, call, Provider.CALENDAR)
    sequence = params.sequence + 1
    ics = _ical(
        "CANCEL",
        params,
        uid=params.uid,
        sequence=sequence,
        to=params.to,
        organizer=params.organizer,
        summary=params.summary,
    )
    text = f"Cancelled: {params.summary}\n\nWhen: {params.describe()}\n"
    msgid = _mail(
        connection,
        call,
        "CANCEL",
        to=params.to,
        subject=f"Cancelled: {params.summary}",
        text=text,
        ics=ics,
    )
    output = {"uid": params.uid, "sequence": sequence, "message_id": msgid}
    return StepOutcome(output=output, undo=None)
