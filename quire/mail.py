"""Sending mail over SMTP: one message to its recipients, plain text, from Quire's address.

The transport is SMTP (stdlib `smtplib`), to the server `QUIRE_SMTP_HOST:QUIRE_SMTP_PORT`
(STARTTLS when `QUIRE_SMTP_STARTTLS`, login when a user is set). A refusal or a dropped
connection raises `MailUnavailable`, so a caller (a Prefect task) can retry it.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from email.message import EmailMessage

from quire.errors import Unavailable
from quire.settings import Settings


class MailUnavailable(Unavailable):
    """The SMTP server could not be reached or refused the message."""


def send(settings: Settings, to: Sequence[str], subject: str, body: str) -> str:
    """Send one message; returns its Message-ID."""
    if not settings.smtp_host:
        raise MailUnavailable("no SMTP server is configured (QUIRE_SMTP_HOST)", code="mail_off")
    if not to:
        raise ValueError("a message needs at least one recipient")
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(settings.smtp_from)
    message.set_content(body)
    try:
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
        ) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailUnavailable(f"the SMTP server refused or dropped the message: {exc}") from exc
    return str(message["Message-ID"])


def make_msgid(sender: str) -> str:
    from email.utils import make_msgid as stdlib_make_msgid

    domain = sender.rpartition("@")[2] or "quire.local"
    return stdlib_make_msgid(domain=domain)
