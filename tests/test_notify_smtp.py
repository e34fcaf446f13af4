"""Sending through the outbox to a real SMTP server (aiosmtpd on loopback): the received
MIME, a hostile feature name end to end, an outage that loses nothing and sends nothing
twice, backfill suppression, digests, and the outbox on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
import socket
import uuid
from collections.abc import Iterator
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from notify import config, outbox
from notify.compose import AlertView
from notify.config import AlertsConfig, EmailSettings, Route, SmtpSettings
from notify.transport import SmtpTransport
from notify.views import anomaly_views
from tests.test_anomalies import KEY, seasonal_costs, usage
from transforms import anomalies as an
from warehouse.migrate import upgrade

EVIL = "<script>alert(1)</script>\r\nBcc: x@evil"
TODAY = dt.date(2025, 8, 8)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


def free_port() -> int:
    # aiosmtpd cannot bind port 0 (its start() self-check connects to the port it was given).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def transport(self) -> SmtpTransport:
        return SmtpTransport(SmtpSettings("127.0.0.1", self.port, "none", None, None, 5.0))


@pytest.fixture
def smtp() -> Iterator[Server]:
    server = Server()
    server.start()
    yield server
    server.stop()


def migrate(engine: sa.Engine) -> None:
    """The warehouse's Alembic chain, 0001_core -> 0002_reconciliation -> 0003_alerts."""
    upgrade(engine)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    migrate(eng)
    yield eng
    eng.dispose()


def settings(mode: str = "immediate") -> AlertsConfig:
    # A week of notification age, so both test alerts (4 days apart) are still due.
    return AlertsConfig(
        email=EmailSettings(backfill_notify_max_age_days=7),
        routes=(
            Route("oncall", ("oncall@example.com",), mode=mode, features=(EVIL, "chat")),
            Route("finance", ("fin@example.com", "cfo@example.com"), mode="digest", all=True),
        ),
    )


def detected_views(cfg: AlertsConfig, feature: str = EVIL) -> list[AlertView]:
    """Real detection on a series whose feature name is hostile: two spikes 4 days apart."""
    costs = seasonal_costs(70, 100.0, seed=21)
    costs[63] = costs[63] * 3
    costs[67] = costs[67] * 3
    frame = usage({(feature, "web", KEY[2]): costs})
    first, last = dt.date(2025, 7, 28), dt.date(2025, 8, 10)
    scores = an.score_series(frame, first, last).collect()
    alerts = an.alerts(scores.lazy(), first, last).collect()
    alerts = alerts.filter(pl.col("metric") == "cost_usd")
    episodes = an.episodes(scores.lazy()).collect()
    return anomaly_views(alerts, scores, episodes, cfg)


def test_alert_arrives_as_parseable_mime_and_the_hostile_name_stays_inert(
    smtp: Server, engine: sa.Engine
) -> None:
    cfg = settings()
    views = detected_views(cfg)
    assert [v.day for v in views] == [dt.date(2025, 8, 4), dt.date(2025, 8, 8)]
    report = outbox.enqueue(engine, views, cfg, today=TODAY)
    assert (report.added, report.suppressed, report.unrouted) == (4, 0, [])
    delivery = outbox.deliver(engine, smtp.transport())
    assert (delivery.sent, delivery.failed) == (2, 0)  # the two immediate ones
    assert outbox.flush_digests(engine, cfg, TODAY) == 1
    assert outbox.deliver(engine, smtp.transport()).sent == 1
    received = smtp.inbox.messages
    assert len(received) == 3
    # Envelope recipients are the routes' lists only: the "Bcc: x@evil" never becomes one.
    assert sorted(tuple(r) for r, _ in received) == [
        ("fin@example.com", "cfo@example.com"),
        ("oncall@example.com",),
        ("oncall@example.com",),
    ]
    for _rcpt, msg in received:
        assert msg["Bcc"] is None and "evil" not in str(msg["To"])
        assert "\n" not in str(msg["Subject"])
        html = msg.get_body(preferencelist=("html",)).get_content()
        assert "<script>" not in html and "&lt;script&gt;" in html
    alert = next(m for r, m in received if r == ["oncall@example.com"])
    types = [p.get_content_type() for p in alert.walk()]
    assert types == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    assert len(alert.as_bytes()) < 100_000
    text = alert.get_body(preferencelist=("plain",)).get_content()
    assert "Expected" in text and "Impact" in text and "Started" in text
    digest = next(m for r, m in received if "fin@example.com" in r)
    assert "digest 2025-08-08" in str(digest["Subject"])
    assert outbox.status_counts(engine) == {"sent": 3, "digested": 2}


def test_smtp_outage_loses_no_alert_and_sends_none_twice(smtp: Server, engine: sa.Engine) -> None:
    cfg = settings()
    views = detected_views(cfg, feature="chat")
    outbox.enqueue(engine, views, cfg, today=TODAY)
    smtp.stop()
    down = outbox.deliver(engine, smtp.transport(), max_attempts=5)
    assert (down.sent, down.failed) == (0, 2)
    assert all("SMTP 127.0.0.1" in e for e in down.errors)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(outbox.alert_outbox.c.status, outbox.alert_outbox.c.attempts).where(
                outbox.alert_outbox.c.mode == "immediate"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("failed", 1), ("failed", 1)]
    # The pipeline reruns the day during the outage: nothing new is queued.
    again = outbox.enqueue(engine, detected_views(cfg, feature="chat"), cfg, today=TODAY)
    assert (again.added, again.already) == (0, 4)
    smtp.start()
    up = outbox.deliver(engine, smtp.transport())
    assert (up.sent, up.failed) == (2, 0)
    assert outbox.deliver(engine, smtp.transport()).sent == 0  # nothing left to send
    ids = [m["Message-ID"] for _, m in smtp.inbox.messages]
    assert len(ids) == 2 and len(set(ids)) == 2
    with engine.connect() as conn:
        attempts = (
            conn.execute(
                sa.select(outbox.alert_outbox.c.attempts).where(
                    outbox.alert_outbox.c.status == "sent"
                )
            )
            .scalars()
            .all()
        )
    assert attempts == [2, 2]


def test_retries_stop_at_max_attempts_and_stay_listed(smtp: Server, engine: sa.Engine) -> None:
    cfg = settings()
    outbox.enqueue(engine, detected_views(cfg, feature="chat")[:1], cfg, today=TODAY)
    smtp.stop()
    for _ in range(3):
        outbox.deliver(engine, smtp.transport(), max_attempts=3)
    assert outbox.status_counts(engine)["dead"] == 1
    smtp.start()
    assert outbox.deliver(engine, smtp.transport(), max_attempts=3).sent == 0


def test_backfill_does_not_resend_old_days(smtp: Server, engine: sa.Engine) -> None:
    cfg = settings()
    views = detected_views(cfg, feature="chat")
    # A backfill run a month later: both alert days are older than 2 days.
    report = outbox.enqueue(engine, views, cfg, today=TODAY + dt.timedelta(days=30))
    assert (report.added, report.suppressed) == (0, 4)
    assert outbox.deliver(engine, smtp.transport()).sent == 0
    assert outbox.flush_digests(engine, cfg, TODAY + dt.timedelta(days=30)) == 0
    assert smtp.inbox.messages == []
    # Today's run sees them as known: still nothing to send.
    assert outbox.enqueue(engine, views, cfg, today=TODAY).already == 4


def test_unrouted_alerts_are_reported_not_dropped(engine: sa.Engine) -> None:
    cfg = AlertsConfig(routes=(Route("only-search", ("s@example.com",), features=("search",)),))
    report = outbox.enqueue(engine, detected_views(cfg, feature="chat"), cfg, today=TODAY)
    assert report.added == 0 and len(report.unrouted) == 2


def test_settings_file_routes_drive_the_outbox(tmp_path: Path, engine: sa.Engine) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "routes:\n"
        "  - {name: chat, features: [chat], recipients: [c@example.com], mode: digest}\n"
        "detection: {min_impact_usd: 5}\n"
        "email: {backfill_notify_max_age_days: 7}\n"
    )
    cfg = config.load(path)
    assert cfg.detection.min_impact_usd == Decimal("5")
    report = outbox.enqueue(engine, detected_views(cfg, feature="chat"), cfg, today=TODAY)
    assert report.added == 2
    assert outbox.flush_digests(engine, cfg, TODAY) == 1
    assert outbox.flush_digests(engine, cfg, TODAY) == 0  # one digest per route and day


@pytest.mark.postgres
def test_outbox_on_postgres_claims_each_row_once(smtp: Server) -> None:
    schema = f"test_alerts_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        connect_args={"options": f"-csearch_path={schema}"},
    )
    try:
        migrate(engine)
        cfg = settings()
        views = detected_views(cfg, feature="chat")
        assert outbox.enqueue(engine, views, cfg, today=TODAY).added == 4
        assert outbox.enqueue(engine, views, cfg, today=TODAY).already == 4
        first = outbox.deliver(engine, smtp.transport())
        second = outbox.deliver(engine, smtp.transport())
        assert (first.sent, second.sent) == (2, 0)
        assert len(smtp.inbox.messages) == 2
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
