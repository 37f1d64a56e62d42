"""Sending mail to users: a one-method :class:`Mailer` protocol, SMTP and an outbox table.

Without ``AEGIS_SMTP_HOST`` messages go to the ``mail_outbox`` table, where an operator (or a
test) can read them. With SMTP, a failed send is kept in the outbox too and logged, so a
provider outage changes nothing the caller can see (FLT-19).
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

import anyio.to_thread

from aegis.server.db.database import Database
from aegis.server.db.models import MailOutbox

__all__ = ["Mailer", "OutboxMailer", "SmtpMailer"]

_log = logging.getLogger("aegis.server.mail")


class Mailer(Protocol):
    """Delivers one message to one recipient.

    Contract: ``send`` may be called concurrently; it must not raise for delivery problems
    (keep the message and log instead), and never logs the body (it may hold a reset link).
    """

    async def send(self, recipient: str, subject: str, body: str) -> None:
        """Deliver (or durably queue) the message."""


class OutboxMailer:
    """Stores every message in the ``mail_outbox`` table.

    Args:
        db: the server database.
        clock: returns the current aware UTC time.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def send(self, recipient: str, subject: str, body: str) -> None:
        """Insert the message into the outbox."""
        now = self._clock()

        def insert(session: object) -> None:
            session.add(  # type: ignore[attr-defined]
                MailOutbox(recipient=recipient, subject=subject, body=body, created_at=now)
            )

        await self._db.run(insert)


class SmtpMailer:
    """Sends through an SMTP server (STARTTLS by default); falls back to the outbox on failure.

    Args:
        host: SMTP server.
        port: SMTP port.
        sender: the ``From`` address.
        username: login, if the server needs one.
        password: password for ``username``.
        starttls: upgrade the connection with STARTTLS.
        fallback: where messages go when sending fails.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None,
        password: str | None,
        starttls: bool,
        fallback: OutboxMailer,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password, self._starttls = username, password, starttls
        self._fallback = fallback

    def _send_sync(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=10) as smtp:
            if self._starttls:
                smtp.starttls()
            if self._username and self._password:
                smtp.login(self._username, self._password)
            smtp.send_message(message)

    async def send(self, recipient: str, subject: str, body: str) -> None:
        """Send the message; on any SMTP or network error, keep it in the outbox."""
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self._sender, recipient, subject
        message.set_content(body)
        try:
            await anyio.to_thread.run_sync(self._send_sync, message)
        except (OSError, smtplib.SMTPException) as exc:
            _log.error("smtp delivery failed, message kept in the outbox: %s", type(exc).__name__)
            await self._fallback.send(recipient, subject, body)
