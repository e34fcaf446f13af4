"""Failure notices: a failed run or a failed ERROR-severity asset check, as one email.

A failed check does not fail its run unless it is blocking, so a run-failure sensor alone
would miss it; both sensors in pipelines.automation build a `FailureNotice` and hand it to
`deliver`, which sends it through the `notify` transport: SMTP when AISPEND_SMTP_HOST is
set (notify.config.smtp_from_env), else an RFC 5322 `.eml` file in `{data}/outbox/`. A
marker `{outbox}/.sent/<kind>-<run id>` is written after the hand-over, so a sensor tick
evaluated twice sends one message; a transport error raises, the tick fails and the sensor
retries it. Text only: values that come from logs (error messages, check metadata) are single
lines without control characters, never markup. No secrets: run ids, job names,
partitions, check names and first error lines only.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

RUN_FAILED = "run_failed"
CHECK_FAILED = "check_failed"
SENDER_ENV = "AISPEND_ALERT_FROM"
RECIPIENTS_ENV = "AISPEND_ALERT_TO"
DEFAULT_SENDER = "aispend@localhost"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(text: str, limit: int = 500) -> str:
    """One safe line: control characters dropped (no header injection), length bounded."""
    one = _CONTROL.sub(" ", str(text).replace("\r", " ").replace("\n", " ")).strip()
    return one if len(one) <= limit else one[: limit - 1] + "…"


@dataclass(frozen=True)
class FailureNotice:
    kind: str  # RUN_FAILED | CHECK_FAILED
    run_id: str
    job_name: str
    partition: str | None
    failures: list[str] = field(default_factory=list)  # one line per failed step or check
    occurred_at: dt.datetime | None = None

    @property
    def subject(self) -> str:
        what = "run failed" if self.kind == RUN_FAILED else "data check failed"
        where = f" for {self.partition}" if self.partition else ""
        return _clean(f"[aispend] {self.job_name} {what}{where}", 200)

    def body(self) -> str:
        lines = [
            f"Job:       {_clean(self.job_name)}",
            f"Partition: {_clean(self.partition or '-')}",
            f"Run id:    {_clean(self.run_id)}",
            "",
            "What failed:" if self.failures else "The run failed.",
            *(f"  - {_clean(f)}" for f in self.failures),
            "",
            "Open the run in the Dagster UI (make ui) for logs and metadata; rerun the",
            f"partition with: aispend run --from {self.partition or 'DAY'} "
            f"--to {self.partition or 'DAY'}",
        ]
        return "\n".join(lines) + "\n"

    def email(self, sender: str | None = None, recipients: list[str] | None = None) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = self.subject
        message["From"] = sender or os.environ.get(SENDER_ENV, DEFAULT_SENDER)
        to = recipients or [
            r.strip() for r in os.environ.get(RECIPIENTS_ENV, "").split(",") if r.strip()
        ]
        message["To"] = ", ".join(to) if to else "aispend-alerts@localhost"
        message["X-Aispend-Run-Id"] = _clean(self.run_id, 100)
        message["X-Aispend-Kind"] = self.kind
        if self.occurred_at is not None:
            message["Date"] = format_datetime(self.occurred_at)
        message.set_content(self.body())
        return message

    @property
    def file_name(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", self.run_id)
        return f"{self.kind}-{safe}"


def deliver(notice: FailureNotice, outbox: Path) -> Path:
    """Send the notice once per kind and run; returns the marker recording it."""
    marker = outbox / ".sent" / notice.file_name
    if marker.exists():
        return marker
    message = notice.email()
    # A stable id: the .eml transport names its file after it, mail clients thread on it.
    message["Message-ID"] = f"<{notice.file_name}@aispend>"
    _transport(outbox).send(message)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(message["Subject"]) + "\n", encoding="utf-8")
    return marker


def _transport(outbox: Path) -> Any:
    from notify.transport import transport_from_env

    return transport_from_env(outbox)
