"""`aispend anomalies` and the day-level flow on a real lake: roll-ups and ingest counts
written as partitions, detection, budgets, a data-missing day, and .eml sending that a
rerun does not repeat."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from aispend_cli.main import app
from lake import store
from notify import config, daily
from notify.transport import EmlTransport
from tests.test_anomalies import START, seasonal_costs, usage
from warehouse.migrate import upgrade

SPIKE = 63
MISSING = 65


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("data")
    costs = seasonal_costs(70, 100.0, seed=31)
    costs[SPIKE] = costs[SPIKE] * 3
    other = seasonal_costs(70, 40.0, seed=32)
    frame = usage(
        {("chat", "web", "openai/gpt-4o"): costs, ("search", "data", "openai/o3"): other}
    ).collect()
    for i in range(70):
        d = START + dt.timedelta(days=i)
        store.write_partition(base, "usage_daily", d, frame.filter(pl.col("day") == d))
        rows = 0 if i == MISSING else 1000
        counts = pl.DataFrame(
            {
                "source": ["litellm", "helicone"],
                "day": [d, d],
                "rows_read": [1000, rows],
                "normalized": [1000, rows],
                "duplicates": [0, 0],
                "quarantined": [0, 0],
            }
        )
        store.write_partition(base, "ingest_counts", d, counts)
    return base


def day(i: int) -> str:
    return (START + dt.timedelta(days=i)).isoformat()


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=env or {})
    return result.exit_code, result.stdout, result.stderr


def test_json_lists_the_days_anomalies_and_budget_events(lake_dir: Path, tmp_path: Path) -> None:
    settings = tmp_path / "alerts.yaml"
    settings.write_text("budgets:\n  - {feature: chat, daily_usd: 150}\n")
    code, out, err = run(
        ["anomalies", "--date", day(SPIKE), "--json", "--data-dir", str(lake_dir)],
        {"AISPEND_ALERTS_CONFIG": str(settings)},
    )
    assert code == 0, err
    data = json.loads(out)
    spend = [a for a in data["anomalies"] if a["metric"] == "cost_usd"]
    assert {a["scope"] for a in spend} == {"feature", "feature_model", "team"}
    assert all(a["series"].startswith(("chat", "web")) for a in spend)
    feature = next(a for a in spend if a["scope"] == "feature")
    assert Decimal(feature["impact_usd"]) > Decimal("100") and feature["score"] > 3.5
    assert [a["scope"] for a in data["alerts"] if a["metric"] == "cost_usd"] == ["feature"]
    assert [e["kind"] for e in data["budget_events"]] == ["daily_breach"]
    assert data["data_missing"] == []


def test_text_output_and_the_data_missing_day(lake_dir: Path) -> None:
    code, out, _ = run(["anomalies", "--date", day(MISSING), "--data-dir", str(lake_dir)])
    assert code == 0
    assert "0 anomalies" in out and "data missing: helicone partial: 0 rows" in out
    assert "incomplete" in out
    code, out, _ = run(["anomalies", "--date", day(SPIKE), "--data-dir", str(lake_dir)])
    assert "cost_usd" in out and "chat" in out and "score" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2025-13-01"], "error: --date: expected a date YYYY-MM-DD"),
        (["--date", "2020-01-01"], "usage_daily: no partition up to 2020-01-01"),
    ],
)
def test_user_mistakes_are_one_line(lake_dir: Path, args: list[str], message: str) -> None:
    code, out, err = run(["anomalies", *args, "--data-dir", str(lake_dir)])
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1


def test_bad_settings_file_is_one_line(lake_dir: Path, tmp_path: Path) -> None:
    settings = tmp_path / "alerts.yaml"
    settings.write_text("detection: {z_threshold: high}\n")
    code, _, err = run(
        ["anomalies", "--date", day(SPIKE), "--data-dir", str(lake_dir)],
        {"AISPEND_ALERTS_CONFIG": str(settings)},
    )
    assert code == 2 and "detection.z_threshold: expected a number" in err


def test_notify_day_writes_eml_once(lake_dir: Path, tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    upgrade(engine)
    cfg = config.AlertsConfig()
    target = START + dt.timedelta(days=SPIKE)
    result = daily.evaluate_day(lake_dir, target, cfg)
    transport = EmlTransport(tmp_path / "outbox")
    explain = daily.explainer(lake_dir, result)
    report = daily.notify_day(engine, result, cfg, transport, explain=explain, today=target)
    assert report.delivery.sent == 1 and report.enqueued.added == 1
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    text = files[0].read_text()
    assert "Why: volume vs unit price" in text and "helicone: complete" in text
    again = daily.notify_day(
        engine, daily.evaluate_day(lake_dir, target, cfg), cfg, transport, today=target
    )
    assert again.enqueued.already == 1 and again.delivery.sent == 0
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    missing = daily.evaluate_day(lake_dir, START + dt.timedelta(days=MISSING), cfg)
    note = daily.notify_day(engine, missing, cfg, transport, today=target)
    assert note.delivery.sent == 1 and missing.alerts.is_empty()
    engine.dispose()


def test_scores_load_into_the_warehouse_exactly(lake_dir: Path, tmp_path: Path) -> None:
    from warehouse.load import replace_partition

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    upgrade(engine)
    target = START + dt.timedelta(days=SPIKE)
    result = daily.evaluate_day(lake_dir, target, config.AlertsConfig())
    rows = replace_partition(engine, "anomaly_scores", "day", target, result.scores)
    assert rows == result.scores.height
    assert replace_partition(engine, "anomaly_scores", "day", target, result.scores) == rows
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT impact_usd FROM anomaly_scores WHERE is_anomaly AND scope = 'feature' "
                "AND metric = 'cost_usd'"
            )
        ).scalar_one()
        count = conn.execute(sa.text("SELECT count(*) FROM anomaly_scores")).scalar_one()
    expected = result.scores.filter(
        pl.col("is_anomaly") & (pl.col("scope") == "feature") & (pl.col("metric") == "cost_usd")
    )["impact_usd"].item()
    assert Decimal(stored) == expected and count == rows
    engine.dispose()


def test_warehouse_feedback_marks_the_spike_expected(lake_dir: Path, tmp_path: Path) -> None:
    from notify import feedback

    data = tmp_path / "data"
    shutil.copytree(lake_dir, data)
    engine = sa.create_engine(f"sqlite:///{data / 'warehouse.sqlite'}")
    upgrade(engine)
    target = START + dt.timedelta(days=SPIKE)
    feedback.add(engine, kind="planned", day_from=target, feature="chat", note="launch")
    with pytest.raises(ValueError, match="must name a feature"):
        feedback.add(engine, kind="planned", day_from=target)
    engine.dispose()
    code, out, err = run(["anomalies", "--date", day(SPIKE), "--json", "--data-dir", str(data)])
    assert code == 0, err
    result = json.loads(out)
    spend = [a for a in result["anomalies"] if a["metric"] == "cost_usd"]
    assert spend and {a["status"] for a in spend} == {"expected"}
    assert {a["feedback"] for a in spend} == {"planned"}
    assert result["alerts"] == []


def test_store_day_is_idempotent(lake_dir: Path, tmp_path: Path) -> None:
    from notify.store import store_day

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    upgrade(engine)
    target = START + dt.timedelta(days=SPIKE)
    result = daily.evaluate_day(lake_dir, target, config.AlertsConfig())
    first = store_day(engine, result)
    assert store_day(engine, result) == first
    with engine.connect() as conn:
        episodes = conn.execute(sa.text("SELECT count(*), sum(days) FROM anomaly_episodes")).one()
        total = conn.execute(
            sa.text(
                "SELECT total_impact_usd FROM anomaly_episodes "
                "WHERE scope = 'feature' AND metric = 'cost_usd'"
            )
        ).scalar_one()
    assert episodes[0] == result.episodes.height == first[1]
    spend = result.episodes.filter(
        (pl.col("scope") == "feature") & (pl.col("metric") == "cost_usd")
    )
    assert Decimal(total) == spend["total_impact_usd"].item()
    engine.dispose()


def test_settings_default_to_alerts_yaml_in_the_data_dir(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`aispend demo` writes DATA_DIR/alerts.yaml; the CLI, the report and the pipeline must
    read the same file when AISPEND_ALERTS_CONFIG is unset, or they disagree on thresholds."""
    from notify import config

    monkeypatch.delenv(config.ENV_CONFIG, raising=False)
    assert config.settings_path(tmp_path) is None
    (tmp_path / "alerts.yaml").write_text("detection:\n  min_impact_usd: '1.5'\n")
    assert config.settings_path(tmp_path) == str(tmp_path / "alerts.yaml")
    explicit = tmp_path / "other.yaml"
    explicit.write_text("{}\n")
    monkeypatch.setenv(config.ENV_CONFIG, str(explicit))
    assert config.settings_path(tmp_path) == str(explicit)
