"""Sending a built email: SMTP (STARTTLS, SSL or plain, optional login) or, with no SMTP
server configured, an `.eml` file per message in an outbox folder (the embedded default:
open the files with any mail client).

Both raise `TransportError` for anything worth retrying later (server down, refused, timed
out, disk full); the outbox records the error and retries. Credentials come from
`notify.config.smtp_from_env` and never appear in errors or logs.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from notify.config import SmtpSettings, smtp_from_env


class TransportError(Exception):
    """The message was not handed over; safe to retry."""


class Transport(Protocol):
    name: str

    def send(self, message: EmailMessage) -> None: ...


class SmtpTransport:
    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            if s.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with client:
                if s.security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if s.username:
                    client.login(s.username, s.password or "")
                refused = client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            # Never echo the server's full reply into logs: it may quote credentials.
            raise TransportError(
                f"SMTP {s.host}:{s.port}: {type(exc).__name__}: {_short(exc)}"
            ) from None
        if refused:
            raise TransportError(f"SMTP {s.host}:{s.port}: refused {sorted(refused)}")


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\r", " ").replace("\n", " ")
    return text[:200]


class EmlTransport:
    """Writes `<message-id hash>.eml` atomically (temp file + rename): a message file is
    whole or absent, and the same message always lands in the same file."""

    name = "eml"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, message: EmailMessage) -> Path:
        ident = str(message.get("Message-ID", "")) or message.as_string()
        digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
        return self.directory / f"{digest}.eml"

    def send(self, message: EmailMessage) -> None:
        target = self.path_for(message)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())
            os.replace(tmp, target)
        except OSError as exc:
            raise TransportError(f"outbox folder {self.directory}: {exc.strerror}") from None


def transport_from_env(outbox_dir: str | os.PathLike[str]) -> Transport:
    """SMTP when AISPEND_SMTP_HOST is set, else .eml files in `outbox_dir`."""
    settings = smtp_from_env()
    if settings is None:
        return EmlTransport(outbox_dir)
    return SmtpTransport(settings)
