"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives: the demo's mail
server, and the tests'.

Quire's connectors send mail over SMTP to whatever server a tenant configures. Offline there
is none, so the demo starts this one beside it: every message that arrives is kept in memory
(`messages`) and, when a directory is given, written there as an `.eml` file a mail client
opens. Nothing is relayed onwards.

    with LocalMailbox(directory=data / "mail") as mailbox:
        ... SmtpConnection(host="127.0.0.1", port=mailbox.port, starttls=False, ...) ...
        mailbox.messages            # [email.message.Message, ...]
"""

from __future__ import annotations

import threading
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from deployments.net import HOST, free_port


class _Keep:
    """aiosmtpd's handler: accept every message, keep it, and file it when asked to."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.messages: list[Message] = []
        self.files: list[Path] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        with self._lock:
            self.messages.append(message_from_bytes(content))
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
                path = self.directory / f"{len(self.messages):04d}.eml"
                path.write_bytes(content)
                self.files.append(path)
        return "250 OK"


class LocalMailbox:
    """The server and what it has received. Start with `with` (or start()/stop())."""

    def __init__(self, *, directory: Path | None = None, port: int | None = None) -> None:
        self.handler = _Keep(directory)
        self.host = HOST
        self.port = port or free_port(HOST)
        self.controller = Controller(self.handler, hostname=self.host, port=self.port)

    def start(self) -> LocalMailbox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> LocalMailbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[Message]:
        return list(self.handler.messages)

    @property
    def files(self) -> list[Path]:
        """The `.eml` files written so far (none without a directory)."""
        return list(self.handler.files)
