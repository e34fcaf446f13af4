"""Alerts in the pipeline: settings resource, outbox folder, and the two Dagster-free steps the
`anomalies` asset runs for one day.

* `detect(base, day, engine, cfg)`: `notify.daily.evaluate_day` over the lake's roll-ups
  (with the warehouse's `alert_feedback` rows as extra feedback), the day's scores written to
  the lake dataset `anomaly_scores` (the daily report reads it; sorted so reruns give the
  same bytes), then `notify.store.store_day` (warehouse `anomaly_scores` partition replaced,
  the recomputed episodes upserted).
* `send(base, engine, result, cfg, today)`: `notify.daily.notify_day` through the transport of
  `transport(base, cfg)`: SMTP when AISPEND_SMTP_HOST is set, else `.eml` files in the outbox
  folder. The outbox table keys each alert, so a rerun or backfill sends nothing twice.

`today` is the wall-clock UTC date unless AISPEND_ALERTS_TODAY says otherwise: alerts for
days older than today - `backfill_notify_max_age_days` are recorded as suppressed, never
sent, so a backfill of last month does not flood inboxes. Only the demo, which replays fixed
past dates, sets the variable (to the day after its data), so its last days mail as a nightly
run would.

Outbox folder: `email.outbox_dir` of the alerts settings, else `{data}/outbox` for a local
data dir, else AISPEND_OUTBOX (default `./outbox`); the failure notices use the same folder.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import sqlalchemy as sa

import lake as lake_store

ALERTS_CONFIG_ENV = "AISPEND_ALERTS_CONFIG"
ALERTS_TODAY_ENV = "AISPEND_ALERTS_TODAY"
OUTBOX_ENV = "AISPEND_OUTBOX"
SCORES_DATASET = "anomaly_scores"
# notify.outbox.deliver retries a row stuck in `sending` after this lease.
SENDING_LEASE = dt.timedelta(minutes=15)


class AlertsResource(dg.ConfigurableResource):  # type: ignore[misc]
    """The alerts settings file (notify.config) and the date alerts count as today."""

    config_path: str = ""  # "" = built-in defaults
    today: str = ""  # "" = the wall-clock UTC date

    def load(self) -> Any:
        from notify import config

        if not self.config_path:
            return config.AlertsConfig()
        return config.load(self.config_path)

    def load_for(self, base: str) -> Any:
        """The settings for data under `base`: the configured file, else `alerts.yaml` there."""
        from notify import config

        return config.load(self.config_path or None, data_dir=base)

    def today_date(self) -> dt.date:
        if not self.today:
            return dt.datetime.now(dt.UTC).date()
        try:
            return dt.date.fromisoformat(self.today)
        except ValueError:
            raise ValueError(
                f"{ALERTS_TODAY_ENV}={self.today!r}: expected a date (YYYY-MM-DD)"
            ) from None


def alerts_from_env() -> AlertsResource:
    return AlertsResource(
        config_path=os.environ.get(ALERTS_CONFIG_ENV, "").strip(),
        today=os.environ.get(ALERTS_TODAY_ENV, "").strip(),
    )


def outbox_dir(base: str, cfg: Any = None) -> Path:
    configured = getattr(getattr(cfg, "email", None), "outbox_dir", None)
    if configured:
        return Path(configured)
    if "://" in base and not base.startswith("file://"):
        return Path(os.environ.get(OUTBOX_ENV, "").strip() or "./outbox")
    return Path(base.removeprefix("file://")) / "outbox"


def transport(base: str, cfg: Any) -> Any:
    from notify.transport import transport_from_env

    return transport_from_env(outbox_dir(base, cfg))


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [
        c
        for c, dtype in frame.schema.items()
        if dtype in (pl.String, pl.Date, pl.Boolean) or isinstance(dtype, pl.Datetime)
    ]
    return frame.sort(keys or frame.columns, nulls_last=True, maintain_order=True)


def detect(base: str, day: dt.date, engine: Any, cfg: Any) -> tuple[Any, str]:
    """Score `day`, write the lake and warehouse; (notify.daily.DayResult, lake path)."""
    from notify import daily, feedback, store

    result = daily.evaluate_day(base, day, cfg, extra_feedback=feedback.load_if_present(engine))
    result.scores = _sorted(result.scores)
    path = lake_store.write_partition(base, SCORES_DATASET, day, result.scores)
    store.store_day(engine, result)
    return result, path


def send(base: str, engine: Any, result: Any, cfg: Any, today: dt.date) -> Any:
    """Enqueue the day's alerts (idempotent per alert key and route) and deliver what is due;
    a transport failure is recorded in the outbox and retried by the `outbox_retry` schedule."""
    from notify import daily

    return daily.notify_day(
        engine,
        result,
        cfg,
        transport(base, cfg),
        explain=daily.explainer(base, result),
        today=today,
    )


def due_messages(engine: Any, now: dt.datetime | None = None) -> int:
    """Outbox rows `notify.outbox.deliver` would (re)try now: pending, failed, or stuck in
    `sending` past the lease."""
    from notify.outbox import alert_outbox

    moment = now or dt.datetime.now(dt.UTC)
    c = alert_outbox.c
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(alert_outbox)
                .where(
                    (c.mode == "immediate")
                    & (
                        c.status.in_(["pending", "failed"])
                        | ((c.status == "sending") & (c.claimed_at < moment - SENDING_LEASE))
                    )
                )
            ).scalar_one()
        )
