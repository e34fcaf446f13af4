"""The alerts settings file (`AISPEND_ALERTS_CONFIG`, YAML): detection knobs, completeness,
budgets, rate limits, recipient routes, feedback and email settings.

Every section is optional; a missing file setting means the documented default
(docs/alerts.md, docs/examples/alerts.yaml). Unknown keys are errors, so a typo such as
`z_treshold` cannot silently fall back to a default. A mistake raises `ConfigError` with one
line naming the file and the field (`alerts.yaml: budgets[2].monthly_usd: expected a
number, got 'lots'`). Money is read as text into Decimal (`12.10` stays 12.10, never a float).

SMTP settings come from environment variables, never from the file, so the file can live in
version control: AISPEND_SMTP_HOST (unset = write .eml files to the outbox folder instead),
AISPEND_SMTP_PORT (default 587 for starttls, 465 for ssl, 25 for none),
AISPEND_SMTP_SECURITY (starttls | ssl | none; default starttls), AISPEND_SMTP_USER,
AISPEND_SMTP_PASSWORD, AISPEND_SMTP_TIMEOUT (seconds, default 30).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from transforms.anomalies import (
    DEFAULT_METRICS,
    FEEDBACK_KINDS,
    SCOPES,
    DetectionSettings,
    MetricRule,
    feedback_frame,
)
from transforms.budgets import Budget, RateLimit

ENV_CONFIG = "AISPEND_ALERTS_CONFIG"
ALERT_KINDS = ("anomaly", "new_spend", "budget", "rate_limit", "data_missing")
MODES = ("immediate", "digest")
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")


class ConfigError(Exception):
    """A mistake in the alerts settings; the message names the file and the field."""


@dataclass(frozen=True)
class CompletenessSettings:
    expected_sources: tuple[str, ...] | None = None  # None = every source seen in the counts
    partial_ratio: float = 0.5
    max_quiet_minutes: int = 180


@dataclass(frozen=True)
class Route:
    name: str
    recipients: tuple[str, ...]
    mode: str = "immediate"  # immediate | digest
    features: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    all: bool = False  # every feature and team, budgets of the total, rate limits, notices
    kinds: tuple[str, ...] = ALERT_KINDS

    def matches(self, kind: str, feature: str | None, team: str | None) -> bool:
        if kind not in self.kinds:
            return False
        if self.all:
            return True
        return (feature is not None and feature in self.features) or (
            team is not None and team in self.teams
        )


@dataclass(frozen=True)
class EmailSettings:
    sender: str = "aispend@localhost"
    subject_prefix: str = "[aispend]"
    backfill_notify_max_age_days: int = 2
    max_attempts: int = 5
    outbox_dir: str | None = None  # default {data dir}/outbox
    chart_days: int = 28
    mark_expected_hint: str = (
        "Add to the feedback list of {config}:\n"
        "  - {{feature: {feature}, from: {start}, to: {end}, kind: expected, note: why}}"
    )


class Budgets(tuple[Budget, ...]):
    """The configured budgets, plus lookups by scope (the daily report reads these)."""

    @property
    def monthly_usd(self) -> Decimal | None:
        """The monthly budget of the total spend, if one is set."""
        return next((b.monthly_usd for b in self if b.scope == "total"), None)

    @property
    def teams(self) -> dict[str, Budget]:
        return {b.name: b for b in self if b.scope == "team" and b.name is not None}

    @property
    def features(self) -> dict[str, Budget]:
        return {b.name: b for b in self if b.scope == "feature" and b.name is not None}


@dataclass(frozen=True)
class AlertsConfig:
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    completeness: CompletenessSettings = field(default_factory=CompletenessSettings)
    budgets: Budgets = field(default_factory=Budgets)
    rate_limits: tuple[RateLimit, ...] = ()
    routes: tuple[Route, ...] = (
        Route(name="default", recipients=("aispend-alerts@localhost",), all=True),
    )
    feedback: tuple[dict[str, Any], ...] = ()
    email: EmailSettings = field(default_factory=EmailSettings)
    source: str = "(defaults)"

    def feedback_frame(self) -> pl.LazyFrame:
        return feedback_frame(self.feedback)

    def routes_for(self, kind: str, feature: str | None, team: str | None) -> list[Route]:
        return [r for r in self.routes if r.matches(kind, feature, team)]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    username: str | None
    password: str | None
    timeout: float


# --------------------------------------------------------------------------- loading
DATA_DIR_FILE = "alerts.yaml"


def settings_path(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """Which settings file applies: $AISPEND_ALERTS_CONFIG, else `alerts.yaml` in the data
    directory when there is one (what `aispend demo` writes), else none (built-in defaults).
    The pipeline, `aispend anomalies` and `aispend report` all resolve it here, so they never
    disagree about thresholds or budgets."""
    env = os.environ.get(ENV_CONFIG, "").strip()
    if env:
        return env
    if data_dir is not None and "://" not in str(data_dir):
        candidate = Path(data_dir) / DATA_DIR_FILE
        if candidate.is_file():
            return str(candidate)
    return None


def load(
    path: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> AlertsConfig:
    """Load the settings from `path`, else `settings_path(data_dir)`, else defaults."""
    chosen = path if path is not None else settings_path(data_dir)
    if chosen is None:
        return AlertsConfig()
    file = Path(chosen)
    name = file.name
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the alerts settings: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{name}:{where}: not valid YAML") from None
    if data is None:
        data = {}
    return parse(data, name)


load_alerts_config = load


def parse(data: Any, name: str = "alerts.yaml") -> AlertsConfig:
    """Build the settings from parsed YAML; `name` prefixes error messages."""
    p = _Parser(name)
    root = p.mapping(
        data,
        "",
        {"detection", "completeness", "budgets", "rate_limits", "routes", "feedback", "email"},
    )
    cfg = AlertsConfig(source=name)
    if "detection" in root:
        cfg = replace(cfg, detection=p.detection(root["detection"]))
    if "completeness" in root:
        cfg = replace(cfg, completeness=p.completeness(root["completeness"]))
    if "budgets" in root:
        cfg = replace(
            cfg,
            budgets=Budgets(
                p.budget(b, f"budgets[{i}]")
                for i, b in enumerate(p.sequence(root["budgets"], "budgets"))
            ),
        )
    if "rate_limits" in root:
        cfg = replace(
            cfg,
            rate_limits=tuple(
                p.rate_limit(r, f"rate_limits[{i}]")
                for i, r in enumerate(p.sequence(root["rate_limits"], "rate_limits"))
            ),
        )
    if "routes" in root:
        routes = tuple(
            p.route(r, f"routes[{i}]") for i, r in enumerate(p.sequence(root["routes"], "routes"))
        )
        names = [r.name for r in routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{name}: routes: duplicate route name {dupes[0]!r}")
        cfg = replace(cfg, routes=routes)
    if "feedback" in root:
        cfg = replace(
            cfg,
            feedback=tuple(
                p.feedback(f, f"feedback[{i}]")
                for i, f in enumerate(p.sequence(root["feedback"], "feedback"))
            ),
        )
    if "email" in root:
        cfg = replace(cfg, email=p.email(root["email"]))
    return cfg


class _Parser:
    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(
            f"{self.name}: {where}: {message}" if where else f"{self.name}: {message}"
        )

    def mapping(self, value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}" if where else unknown[0],
                f"unknown setting (expected one of {', '.join(sorted(allowed))})",
            )
        return dict(value)

    def sequence(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value

    def number(self, value: Any, where: str, *, minimum: float | None = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(where, f"must be >= {minimum:g}, got {value!r}")
        return float(value)

    def integer(self, value: Any, where: str, *, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected a whole number, got {value!r}")
        if value < minimum:
            raise self.fail(where, f"must be >= {minimum}, got {value!r}")
        return value

    def money(self, value: Any, where: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.fail(where, f"expected an amount in USD, got {value!r}")
        try:
            # YAML floats arrive as float: their repr is the shortest text, i.e. what was typed.
            amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except InvalidOperation:
            raise self.fail(where, f"expected an amount in USD, got {value!r}") from None
        if not amount.is_finite() or amount < 0:
            raise self.fail(where, f"expected a non-negative amount in USD, got {value!r}")
        return amount

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        return value.strip()

    def choice(self, value: Any, where: str, options: Sequence[str]) -> str:
        if value not in options:
            raise self.fail(where, f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)

    def texts(self, value: Any, where: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        return tuple(
            self.text(v, f"{where}[{i}]") for i, v in enumerate(self.sequence(value, where))
        )

    def date(self, value: Any, where: str) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(where, f"expected a date YYYY-MM-DD, got {value!r}") from None

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {value!r}")
        return value

    # ----------------------------------------------------------------------- sections
    def detection(self, value: Any) -> DetectionSettings:
        where = "detection"
        numeric = {f.name for f in fields(DetectionSettings)} - {
            "metrics",
            "scopes",
            "new_spend_scopes",
            "direction",
            "realert_basis",
        }
        raw = self.mapping(
            value,
            where,
            numeric | {"metrics", "scopes", "new_spend_scopes", "direction", "realert_basis"},
        )
        base = DetectionSettings()
        kwargs: dict[str, Any] = {}
        for key, v in raw.items():
            at = f"{where}.{key}"
            default = getattr(base, key)
            if key in ("direction",):
                kwargs[key] = self.choice(v, at, ("up", "down", "both"))
            elif key == "realert_basis":
                kwargs[key] = self.choice(v, at, ("peak", "total"))
            elif key in ("scopes", "new_spend_scopes"):
                items = self.texts(v, at)
                for i, item in enumerate(items):
                    self.choice(item, f"{at}[{i}]", SCOPES)
                kwargs[key] = items
            elif key == "metrics":
                kwargs[key] = self.metrics(v, at)
            elif isinstance(default, Decimal):
                kwargs[key] = self.money(v, at)
            elif isinstance(default, int):
                kwargs[key] = self.integer(v, at, minimum=1 if key != "min_history_days" else 0)
            else:
                kwargs[key] = self.number(v, at)
        settings = replace(base, **kwargs)
        if settings.realert_growth <= 1:
            raise self.fail(f"{where}.realert_growth", "must be > 1")
        if not 0 <= settings.tail_quantile < 1:
            raise self.fail(f"{where}.tail_quantile", "must be in [0, 1)")
        return settings

    def metrics(self, value: Any, where: str) -> dict[str, MetricRule]:
        raw = self.mapping(value, where, set(DEFAULT_METRICS))
        out = dict(DEFAULT_METRICS)
        allowed = {f.name for f in fields(MetricRule)}
        for metric, settings in raw.items():
            at = f"{where}.{metric}"
            rule_raw = self.mapping(settings, at, allowed)
            kwargs: dict[str, Any] = {}
            for key, v in rule_raw.items():
                if key == "direction":
                    kwargs[key] = self.choice(v, f"{at}.{key}", ("up", "down", "both"))
                elif key == "enabled":
                    kwargs[key] = self.boolean(v, f"{at}.{key}")
                elif key == "min_requests":
                    kwargs[key] = self.integer(v, f"{at}.{key}")
                elif key == "scopes":
                    scopes = self.texts(v, f"{at}.{key}")
                    for i, item in enumerate(scopes):
                        self.choice(item, f"{at}.{key}[{i}]", SCOPES)
                    kwargs[key] = scopes
                else:
                    kwargs[key] = self.number(v, f"{at}.{key}")
            out[metric] = replace(DEFAULT_METRICS[metric], **kwargs)
        return out

    def completeness(self, value: Any) -> CompletenessSettings:
        where = "completeness"
        raw = self.mapping(value, where, {"expected_sources", "partial_ratio", "max_quiet_minutes"})
        out = CompletenessSettings()
        if "expected_sources" in raw:
            out = replace(
                out,
                expected_sources=self.texts(raw["expected_sources"], f"{where}.expected_sources"),
            )
        if "partial_ratio" in raw:
            ratio = self.number(raw["partial_ratio"], f"{where}.partial_ratio")
            if ratio > 1:
                raise self.fail(f"{where}.partial_ratio", f"must be <= 1, got {ratio:g}")
            out = replace(out, partial_ratio=ratio)
        if "max_quiet_minutes" in raw:
            out = replace(
                out,
                max_quiet_minutes=self.integer(
                    raw["max_quiet_minutes"], f"{where}.max_quiet_minutes"
                ),
            )
        return out

    def budget(self, value: Any, where: str) -> Budget:
        raw = self.mapping(
            value, where, {"feature", "team", "total", "daily_usd", "monthly_usd", "warn_ratio"}
        )
        scopes = [k for k in ("feature", "team", "total") if k in raw]
        if len(scopes) != 1:
            raise self.fail(where, "name exactly one of feature, team or total: true")
        scope = scopes[0]
        name = None
        if scope == "total":
            if raw["total"] is not True:
                raise self.fail(f"{where}.total", "expected true")
        else:
            name = self.text(raw[scope], f"{where}.{scope}")
        daily = self.money(raw["daily_usd"], f"{where}.daily_usd") if "daily_usd" in raw else None
        monthly = (
            self.money(raw["monthly_usd"], f"{where}.monthly_usd") if "monthly_usd" in raw else None
        )
        if daily is None and monthly is None:
            raise self.fail(where, "set daily_usd and/or monthly_usd")
        warn = self.number(raw.get("warn_ratio", 0.8), f"{where}.warn_ratio")
        if not 0 < warn <= 1:
            raise self.fail(f"{where}.warn_ratio", f"must be in (0, 1], got {warn:g}")
        return Budget(scope, name, daily, monthly, warn)

    def rate_limit(self, value: Any, where: str) -> RateLimit:
        raw = self.mapping(value, where, {"provider", "model", "rpm", "tpm", "warn_ratio"})
        if "provider" not in raw:
            raise self.fail(where, "provider is required")
        provider = self.text(raw["provider"], f"{where}.provider").lower()
        model = self.text(raw["model"], f"{where}.model") if "model" in raw else None
        if model is not None and "/" not in model:
            model = f"{provider}/{model}"
        rpm = self.integer(raw["rpm"], f"{where}.rpm", minimum=1) if "rpm" in raw else None
        tpm = self.integer(raw["tpm"], f"{where}.tpm", minimum=1) if "tpm" in raw else None
        if rpm is None and tpm is None:
            raise self.fail(where, "set rpm and/or tpm")
        warn = self.number(raw.get("warn_ratio", 0.8), f"{where}.warn_ratio")
        if not 0 < warn <= 1:
            raise self.fail(f"{where}.warn_ratio", f"must be in (0, 1], got {warn:g}")
        return RateLimit(provider, model, rpm, tpm, warn)

    def route(self, value: Any, where: str) -> Route:
        raw = self.mapping(
            value, where, {"name", "recipients", "mode", "features", "teams", "all", "kinds"}
        )
        name = self.text(raw.get("name"), f"{where}.name")
        recipients = self.texts(raw.get("recipients", []), f"{where}.recipients")
        if not recipients:
            raise self.fail(f"{where}.recipients", "at least one address")
        for i, r in enumerate(recipients):
            if not _EMAIL.match(r):
                raise self.fail(f"{where}.recipients[{i}]", f"not an email address: {r!r}")
        mode = self.choice(raw.get("mode", "immediate"), f"{where}.mode", MODES)
        features = self.texts(raw["features"], f"{where}.features") if "features" in raw else ()
        teams = self.texts(raw["teams"], f"{where}.teams") if "teams" in raw else ()
        everything = self.boolean(raw["all"], f"{where}.all") if "all" in raw else False
        if not (features or teams or everything):
            raise self.fail(where, "name features, teams, or all: true")
        kinds: tuple[str, ...] = ALERT_KINDS
        if "kinds" in raw:
            kinds = self.texts(raw["kinds"], f"{where}.kinds")
            for i, k in enumerate(kinds):
                self.choice(k, f"{where}.kinds[{i}]", ALERT_KINDS)
        return Route(name, recipients, mode, features, teams, everything, kinds)

    def feedback(self, value: Any, where: str) -> dict[str, Any]:
        raw = self.mapping(
            value, where, {"feature", "team", "model", "metric", "from", "to", "kind", "note"}
        )
        if not any(k in raw for k in ("feature", "team", "model")):
            raise self.fail(where, "name a feature, team or model")
        if "from" not in raw:
            raise self.fail(where, "from (first day, YYYY-MM-DD) is required")
        day_from = self.date(raw["from"], f"{where}.from")
        day_to = self.date(raw["to"], f"{where}.to") if "to" in raw else day_from
        if day_to < day_from:
            raise self.fail(f"{where}.to", "is before from")
        metric = raw.get("metric")
        if metric is not None:
            self.choice(metric, f"{where}.metric", tuple(DEFAULT_METRICS))
        return {
            "feature": self.text(raw["feature"], f"{where}.feature") if "feature" in raw else None,
            "team": self.text(raw["team"], f"{where}.team") if "team" in raw else None,
            "model_key": self.text(raw["model"], f"{where}.model") if "model" in raw else None,
            "metric": metric,
            "day_from": day_from,
            "day_to": day_to,
            "kind": self.choice(raw.get("kind", "expected"), f"{where}.kind", FEEDBACK_KINDS),
            "note": str(raw.get("note") or ""),
        }

    def email(self, value: Any) -> EmailSettings:
        where = "email"
        raw = self.mapping(
            value,
            where,
            {
                "from",
                "subject_prefix",
                "backfill_notify_max_age_days",
                "max_attempts",
                "outbox_dir",
                "chart_days",
            },
        )
        out = EmailSettings()
        if "from" in raw:
            sender = self.text(raw["from"], f"{where}.from")
            if not _EMAIL.match(sender):
                raise self.fail(f"{where}.from", f"not an email address: {sender!r}")
            out = replace(out, sender=sender)
        if "subject_prefix" in raw:
            prefix = raw["subject_prefix"]
            if not isinstance(prefix, str) or "\n" in prefix or "\r" in prefix:
                raise self.fail(f"{where}.subject_prefix", "expected one line of text")
            out = replace(out, subject_prefix=prefix)
        if "backfill_notify_max_age_days" in raw:
            out = replace(
                out,
                backfill_notify_max_age_days=self.integer(
                    raw["backfill_notify_max_age_days"], f"{where}.backfill_notify_max_age_days"
                ),
            )
        if "max_attempts" in raw:
            out = replace(
                out,
                max_attempts=self.integer(raw["max_attempts"], f"{where}.max_attempts", minimum=1),
            )
        if "chart_days" in raw:
            out = replace(
                out, chart_days=self.integer(raw["chart_days"], f"{where}.chart_days", minimum=7)
            )
        if "outbox_dir" in raw:
            out = replace(out, outbox_dir=self.text(raw["outbox_dir"], f"{where}.outbox_dir"))
        return out


# --------------------------------------------------------------------------- SMTP
def smtp_from_env(env: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """SMTP settings from AISPEND_SMTP_*; None when AISPEND_SMTP_HOST is unset (use .eml)."""
    env = os.environ if env is None else env
    host = (env.get("AISPEND_SMTP_HOST") or "").strip()
    if not host:
        return None
    security = (env.get("AISPEND_SMTP_SECURITY") or "starttls").strip().lower()
    if security not in ("starttls", "ssl", "none"):
        raise ConfigError(
            f"AISPEND_SMTP_SECURITY: expected starttls, ssl or none, got {security!r}"
        )
    default_port = {"starttls": 587, "ssl": 465, "none": 25}[security]
    try:
        port = int(env.get("AISPEND_SMTP_PORT") or default_port)
        timeout = float(env.get("AISPEND_SMTP_TIMEOUT") or 30)
    except ValueError:
        raise ConfigError("AISPEND_SMTP_PORT / AISPEND_SMTP_TIMEOUT: expected a number") from None
    return SmtpSettings(
        host=host,
        port=port,
        security=security,
        username=env.get("AISPEND_SMTP_USER") or None,
        password=env.get("AISPEND_SMTP_PASSWORD") or None,
        timeout=timeout,
    )
