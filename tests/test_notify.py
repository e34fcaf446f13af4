"""Alert settings parsing, MIME structure, escaping and header-injection safety, .eml outbox."""

from __future__ import annotations

import datetime as dt
import email
from decimal import Decimal
from email import policy
from pathlib import Path

import pytest
import yaml

from notify import compose, config
from notify.compose import AlertView, Chart
from notify.transport import EmlTransport
from notify.views import how_to_mark

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "alerts.yaml"
EVIL = "<script>alert(1)</script>\r\nBcc: x@evil"


def test_example_settings_file_loads_with_exact_money() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.detection.min_impact_usd == Decimal("10")
    assert any(b.monthly_usd == Decimal("1200.50") for b in cfg.budgets)
    assert cfg.budgets.features["chat-assistant"].daily_usd == Decimal("60")
    assert {r.mode for r in cfg.routes} == {"immediate", "digest"}
    assert cfg.rate_limits[0].model_key == "openai/gpt-4o"
    assert cfg.feedback_frame().collect().height == len(cfg.feedback) >= 1


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_CONFIG, raising=False)
    cfg = config.load()
    assert cfg.detection.z_threshold == 3.5 and cfg.detection.lookback_days == 56
    assert cfg.routes_for("anomaly", "anything", None)[0].name == "default"
    assert config.smtp_from_env({}) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("detection: {z_treshold: 3}", "alerts.yaml: detection.z_treshold: unknown setting"),
        (
            "budgets: [{feature: a, monthly_usd: lots}]",
            "alerts.yaml: budgets[0].monthly_usd: expected an amount in USD, got 'lots'",
        ),
        ("budgets: [{feature: a}]", "alerts.yaml: budgets[0]: set daily_usd and/or monthly_usd"),
        (
            "routes: [{name: r, all: true, recipients: ['a@b.c\\nBcc: x@evil']}]",
            "alerts.yaml: routes[0].recipients[0]: not an email address",
        ),
        ("routes: [{name: r, recipients: [a@b.c]}]", "routes[0]: name features, teams, or all"),
        (
            "feedback: [{feature: a, from: 2025-10-02, to: 2025-10-01}]",
            "feedback[0].to: is before from",
        ),
        ("rate_limits: [{provider: openai, rpm: -1}]", "rate_limits[0].rpm: must be >= 1"),
        ("detection: {direction: sideways}", "detection.direction: expected one of up, down"),
        ('email: {subject_prefix: "a\\nb"}', "email.subject_prefix: expected one line"),
        ("detection: [", "alerts.yaml: line 1: not valid YAML"),
        (
            "detection: {metrics: {error_rate: {scopes: [galaxy]}}}",
            "detection.metrics.error_rate.scopes[0]: expected one of feature, feature_model, team",
        ),
    ],
)
def test_setting_mistakes_are_one_line_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_smtp_settings_from_env() -> None:
    env = {"AISPEND_SMTP_HOST": "mail.example.com", "AISPEND_SMTP_SECURITY": "ssl"}
    s = config.smtp_from_env(env)
    assert s is not None and (s.port, s.security, s.username) == (465, "ssl", None)
    with pytest.raises(config.ConfigError, match="AISPEND_SMTP_SECURITY"):
        config.smtp_from_env({"AISPEND_SMTP_HOST": "h", "AISPEND_SMTP_SECURITY": "tls1"})


def view(feature: str = "chat", days: int = 28) -> AlertView:
    start = dt.date(2025, 10, 1)
    chart_days = [start + dt.timedelta(days=i) for i in range(days)]
    return AlertView(
        alert_key=f"cost_usd|feature|{feature}|2025-10-28#0",
        kind="anomaly",
        day=chart_days[-1],
        headline=f"{feature} spend +$34.63 (+100%) on 2025-10-28",
        severity="critical",
        feature=feature,
        team="web",
        facts=[("Actual", "$69.21"), ("Expected", "$34.58"), ("Feature", feature)],
        episode=[("Started", "2025-10-28")],
        contributors=[
            {
                "dimension": "user",
                "value": feature,
                "actual": "$1",
                "expected": "$0",
                "delta": "+$1",
                "share": "3%",
            }
        ],
        decomposition=[("Volume", "+$35.05"), ("Unit price", "-$0.48")],
        freshness=["litellm: complete, 12,000 rows"],
        how_to_mark=how_to_mark(config.AlertsConfig(), feature, "web", start, start),
        chart=Chart(
            chart_days,
            [30.0 + i for i in range(days)],
            [30.0] * days,
            [40.0] * days,
            [i == days - 1 for i in range(days)],
            "USD per day",
        ),
    )


def build(v: AlertView) -> email.message.EmailMessage:
    msg = compose.build_message(
        [v],
        sender="aispend@example.com",
        recipients=["oncall@example.com"],
        subject_prefix="[aispend]",
        key=v.alert_key,
    )
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_mime_structure_inline_png_by_cid_and_size() -> None:
    v = view()
    raw = compose.build_message(
        [v],
        sender="aispend@example.com",
        recipients=["a@example.com"],
        subject_prefix="[aispend]",
        key=v.alert_key,
    ).as_bytes()
    assert len(raw) < compose.MAX_MESSAGE_BYTES
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    types = [p.get_content_type() for p in msg.walk()]
    assert types == [
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
    ]
    html = msg.get_body(preferencelist=("html",)).get_content()
    png = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    cid = png["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html
    assert png.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image" not in html and "<svg" not in html and "<style" not in html
    text = msg.get_body(preferencelist=("plain",)).get_content()
    for needle in ("$69.21", "$34.58", "Episode", "Unit price", "litellm: complete", "expected"):
        assert needle in text and needle in html
    # The same alert is the same message: a stable Message-ID.
    assert msg["Message-ID"] == build(v)["Message-ID"] == compose.message_id(v.alert_key)


def test_hostile_feature_name_is_escaped_and_cannot_inject_headers() -> None:
    msg = build(view(feature=EVIL))
    assert msg["Bcc"] is None
    assert "evil" not in " ".join(msg.get_all("To", []))
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    assert str(msg["Subject"]).startswith("[aispend] <script>alert(1)</script> Bcc: x@evil")
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "\r\nBcc:" not in text and "\nBcc:" not in text
    # Only the headers we set exist.
    assert set(msg.keys()) == {
        "Subject",
        "From",
        "To",
        "Message-ID",
        "Date",
        "X-Aispend-Alert-Key",
        "Auto-Submitted",
        "Content-Type",
        "MIME-Version",
    }


def test_digest_lists_every_alert_without_charts() -> None:
    views = [view("a"), view("b"), view(EVIL)]
    msg = compose.build_message(
        views,
        sender="aispend@example.com",
        recipients=["fin@example.com"],
        subject_prefix="[aispend]",
        key="digest|finance|2025-10-28",
        digest_day=dt.date(2025, 10, 28),
    )
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert "image/png" not in [p.get_content_type() for p in parsed.walk()]
    assert "(+2 more)" in str(parsed["Subject"])
    html = parsed.get_body(preferencelist=("html",)).get_content()
    assert html.count("spend +$34.63") == 3 and "<script>" not in html


def test_oversized_alert_drops_the_chart_but_stays_under_the_limit() -> None:
    v = view(days=28)
    v.contributors = v.contributors * 400  # an absurd table pushes the message over 100 KB
    msg = compose.build_message(
        [v],
        sender="a@example.com",
        recipients=["b@example.com"],
        subject_prefix="[x]",
        key=v.alert_key,
    )
    types = [p.get_content_type() for p in msg.walk()]
    assert "image/png" not in types
    assert "Chart left out" in msg.get_body(preferencelist=("html",)).get_content()


def test_eml_transport_writes_one_file_per_message(tmp_path: Path) -> None:
    outbox = EmlTransport(tmp_path / "outbox")
    msg = compose.build_message(
        [view()],
        sender="a@example.com",
        recipients=["b@example.com"],
        subject_prefix="[x]",
        key="k1",
    )
    outbox.send(msg)
    outbox.send(msg)  # the same message again lands in the same file
    files = list((tmp_path / "outbox").iterdir())
    assert [f.suffix for f in files] == [".eml"]
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["Message-ID"] == compose.message_id("k1")


def test_usd_formatting_is_exact_half_up() -> None:
    assert compose.usd(Decimal("1234.565")) == "$1,234.57"
    assert compose.usd(Decimal("-0.004"), signed=True) == "-$0.0040"
    assert compose.usd(Decimal("12"), signed=True) == "+$12.00"
    assert compose.clean_text("a\r\nb\x00c\u202e", 10) == "a b c"
    assert yaml.safe_load(EXAMPLE.read_text())  # the example is plain YAML
