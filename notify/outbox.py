"""The alert outbox: a warehouse table that makes sending idempotent.

One row per (alert_key, route): the same alert computed again (a rerun, a backfill, a retry
of the pipeline) finds its row and adds nothing, so an alert is emailed at most once per
route. Lifecycle of a row:

    pending --claim--> sending --ok--> sent
                          |--error--> failed --(next deliver)--> sending ...
                          '--error, attempts = max_attempts--> dead (kept, listed, not retried)
    suppressed   an alert for a day older than `backfill_notify_max_age_days` (a backfill):
                 recorded, never sent
    digested     a digest-mode alert that went out inside its route's daily digest row

Sending is claim-then-send: a row is moved to `sending` by a conditional UPDATE (status and
attempts unchanged since it was read), so two concurrent senders never both send it. A
failure (server down, refused) is recorded with its error and retried by the next
`deliver`; nothing is lost. The only duplicate window is a crash after the SMTP server
accepted the message and before the `sent` commit: such a row stays `sending` and is retried
after `lease` (15 min) with the same Message-ID, so a mail client can still drop the copy.

Tables are created by the Alembic revision `0003_alerts` (warehouse/migrations); `TABLES`
here mirrors it for queries.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from notify.compose import AlertView, build_message
from notify.config import AlertsConfig
from notify.transport import Transport, TransportError
from warehouse.money import UtcDateTime

metadata = sa.MetaData()

alert_outbox = sa.Table(
    "alert_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_key", sa.String(512), nullable=False),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),  # JSON list
    sa.Column("message", sa.LargeBinary, nullable=True),  # the rendered MIME (immediate)
    sa.Column("payload", sa.Text, nullable=True),  # JSON summary (digest lines)
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("digest_key", sa.String(512), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("claimed_at", UtcDateTime(), nullable=True),
    sa.Column("sent_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("alert_key", "route", name="uq_alert_outbox_key_route"),
)

TERMINAL = ("sent", "dead", "suppressed", "digested")


@dataclass
class EnqueueReport:
    added: int = 0
    already: int = 0
    suppressed: int = 0
    unrouted: list[str] = field(default_factory=list)


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def _existing(conn: sa.Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    names = sorted({k for k, _ in keys})
    for i in range(0, len(names), 500):
        rows = conn.execute(
            sa.select(alert_outbox.c.alert_key, alert_outbox.c.route).where(
                alert_outbox.c.alert_key.in_(names[i : i + 500])
            )
        )
        found.update((r.alert_key, r.route) for r in rows)
    return found


def enqueue(
    engine: Engine,
    views: Sequence[AlertView],
    cfg: AlertsConfig,
    *,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
) -> EnqueueReport:
    """Record each alert once per matching route. `today` is the real date (not the
    partition's): alerts for days older than today - backfill_notify_max_age_days are
    recorded as `suppressed`. Immediate alerts are rendered now (the same bytes are sent on
    every retry); digest alerts keep a summary for their route's digest."""
    moment = _now(now)
    today = today or moment.date()
    oldest = today - dt.timedelta(days=cfg.email.backfill_notify_max_age_days)
    report = EnqueueReport()
    planned: list[tuple[AlertView, str, str, tuple[str, ...]]] = []
    for view in views:
        routes = cfg.routes_for(view.kind, view.feature, view.team)
        if not routes:
            report.unrouted.append(view.alert_key)
        planned.extend((view, r.name, r.mode, r.recipients) for r in routes)
    with engine.begin() as conn:
        existing = _existing(conn, [(v.alert_key, route) for v, route, _, _ in planned])
        for view, route, mode, recipients in planned:
            if (view.alert_key, route) in existing:
                report.already += 1
                continue
            status = "pending" if view.day >= oldest else "suppressed"
            message = None
            if status == "pending" and mode == "immediate":
                msg = build_message(
                    [view],
                    sender=cfg.email.sender,
                    recipients=recipients,
                    subject_prefix=cfg.email.subject_prefix,
                    key=f"{view.alert_key}|{route}",
                    now=moment,
                )
                message = msg.as_bytes()
                subject = str(msg["Subject"])
            else:
                subject = view.headline
            conn.execute(
                alert_outbox.insert().values(
                    alert_key=view.alert_key,
                    route=route,
                    day=view.day,
                    kind=view.kind,
                    mode=mode,
                    status=status,
                    subject=subject,
                    recipients=json.dumps(list(recipients)),
                    message=message,
                    payload=json.dumps(view.summary()),
                    attempts=0,
                    created_at=moment,
                )
            )
            existing.add((view.alert_key, route))
            if status == "suppressed":
                report.suppressed += 1
            else:
                report.added += 1
    return report


def flush_digests(
    engine: Engine, cfg: AlertsConfig, day: dt.date, *, now: dt.datetime | None = None
) -> int:
    """Fold each digest route's pending alerts into one digest email row for `day`
    (`digest|<route>|<day>`), in one transaction. Returns the number of digests made."""
    moment = _now(now)
    made = 0
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(alert_outbox)
            .where((alert_outbox.c.mode == "digest") & (alert_outbox.c.status == "pending"))
            .order_by(alert_outbox.c.route, alert_outbox.c.day, alert_outbox.c.id)
        ).all()
        by_route: dict[str, list[sa.Row[tuple[object, ...]]]] = {}
        for r in rows:
            by_route.setdefault(r.route, []).append(r)
        for route_name, items in by_route.items():
            route = next((r for r in cfg.routes if r.name == route_name), None)
            key = f"digest|{route_name}|{day.isoformat()}"
            if route is None or _existing(conn, [(key, route_name)]):
                continue
            views = [_summary_view(json.loads(str(r.payload))) for r in items]
            order = {"critical": 0, "warning": 1, "notice": 2}
            views.sort(key=lambda v: (order.get(v.severity, 3), v.headline))
            msg = build_message(
                views,
                sender=cfg.email.sender,
                recipients=route.recipients,
                subject_prefix=cfg.email.subject_prefix,
                key=f"{key}|{route_name}",
                digest_day=day,
                now=moment,
            )
            conn.execute(
                alert_outbox.insert().values(
                    alert_key=key,
                    route=route_name,
                    day=day,
                    kind="digest",
                    mode="immediate",
                    status="pending",
                    subject=str(msg["Subject"]),
                    recipients=json.dumps(list(route.recipients)),
                    message=msg.as_bytes(),
                    payload=json.dumps({"alerts": [r.alert_key for r in items]}),
                    attempts=0,
                    created_at=moment,
                )
            )
            conn.execute(
                alert_outbox.update()
                .where(alert_outbox.c.id.in_([r.id for r in items]))
                .values(status="digested", digest_key=key)
            )
            made += 1
    return made


def _summary_view(summary: dict[str, object]) -> AlertView:
    facts = summary.get("facts") or []
    return AlertView(
        alert_key=str(summary["alert_key"]),
        kind=str(summary["kind"]),
        day=dt.date.fromisoformat(str(summary["day"])),
        headline=str(summary["headline"]),
        severity=str(summary.get("severity") or "warning"),
        facts=[(str(a), str(b)) for a, b in facts],  # type: ignore[attr-defined]
        chart=None,
    )


def deliver(
    engine: Engine,
    transport: Transport,
    *,
    max_attempts: int = 5,
    now: dt.datetime | None = None,
    lease: dt.timedelta = dt.timedelta(minutes=15),
) -> DeliveryReport:
    """Send every immediate row that is pending, failed, or stuck in `sending` past its
    lease; record the outcome of each. Never raises for a transport failure."""
    moment = _now(now)
    report = DeliveryReport()
    c = alert_outbox.c
    with engine.connect() as conn:
        candidates = conn.execute(
            sa.select(c.id, c.status, c.attempts, c.claimed_at)
            .where(
                (c.mode == "immediate")
                & (
                    c.status.in_(["pending", "failed"])
                    | ((c.status == "sending") & (c.claimed_at < moment - lease))
                )
            )
            .order_by(c.id)
        ).all()
    for row in candidates:
        with engine.begin() as conn:
            claimed = conn.execute(
                alert_outbox.update()
                .where((c.id == row.id) & (c.status == row.status) & (c.attempts == row.attempts))
                .values(status="sending", claimed_at=moment, attempts=row.attempts + 1)
            ).rowcount
        if claimed != 1:
            continue  # another sender took it
        with engine.connect() as conn:
            raw = conn.execute(sa.select(c.message).where(c.id == row.id)).scalar_one()
        message = BytesParser(policy=policy.default).parsebytes(bytes(raw))
        assert isinstance(message, EmailMessage)
        try:
            transport.send(message)
        except TransportError as exc:
            attempts = row.attempts + 1
            status = "dead" if attempts >= max_attempts else "failed"
            with engine.begin() as conn:
                conn.execute(
                    alert_outbox.update()
                    .where(c.id == row.id)
                    .values(status=status, last_error=str(exc)[:1000])
                )
            report.errors.append(str(exc))
            if status == "dead":
                report.dead += 1
            else:
                report.failed += 1
            continue
        with engine.begin() as conn:
            conn.execute(
                alert_outbox.update()
                .where(c.id == row.id)
                .values(status="sent", sent_at=moment, last_error=None)
            )
        report.sent += 1
    return report


def status_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(alert_outbox.c.status, sa.func.count()).group_by(alert_outbox.c.status)
        ).all()
    return {str(s): int(n) for s, n in rows}


__all__ = [
    "DeliveryReport",
    "EnqueueReport",
    "alert_outbox",
    "deliver",
    "enqueue",
    "flush_digests",
    "metadata",
    "status_counts",
]
