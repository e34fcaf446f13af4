"""A sources.yaml for the files `aispend generate` writes (used by `aispend demo` and tests).

Gateway logs are one file per UTC day, so `trailing_days: 0` reads exactly the day's file;
provider reports and billing exports are one file per month; invoices are one file per
provider and billing month. Locations are relative to the written file.

`write_demo_alerts` writes the demo's alert settings (AISPEND_ALERTS_CONFIG): the documented
defaults with the dollar gates scaled to the generated traffic, a feature and a total
budget, and rate limits so the report's capacity section has headroom to show.
"""

from __future__ import annotations

import os
from pathlib import Path

# (name, kind, location relative to the generator's output, trailing_days)
DEMO_SOURCES: tuple[tuple[str, str, str, int], ...] = (
    ("litellm-prod", "litellm", "litellm/spend-logs-{date:%Y-%m-%d}.jsonl", 0),
    ("helicone", "helicone", "helicone/requests-{date:%Y-%m-%d}.jsonl", 0),
    ("openrouter", "openrouter", "openrouter/generations-{date:%Y-%m-%d}.jsonl", 0),
    ("cloudflare-gateway", "cloudflare", "cloudflare/logs-{date:%Y-%m-%d}.jsonl", 0),
    ("otel-collector", "otel", "otel/spans-{date:%Y-%m-%d}.jsonl", 0),
    ("openai-usage", "openai_usage", "openai/usage-completions-{date:%Y-%m}.json", 0),
    ("openai-costs", "openai_costs", "openai/costs-{date:%Y-%m}.json", 0),
    ("anthropic-usage", "anthropic_usage", "anthropic/usage-{date:%Y-%m}.json", 0),
    ("anthropic-cost", "anthropic_cost", "anthropic/cost-{date:%Y-%m}.json", 0),
    ("aws-cur", "aws_cur", "aws/cur-{date:%Y-%m}.csv", 0),
    ("gcp-billing", "gcp_billing", "google/billing-{date:%Y-%m}.jsonl", 0),
    ("focus", "focus", "focus/focus-{date:%Y-%m}.csv", 0),
    ("invoices", "invoice", "invoices/invoice-*-{date:%Y-%m}.csv", 0),
)


def demo_sources_yaml(generated: Path, config_dir: Path) -> str:
    """The text of a sources.yaml, placed in `config_dir`, reading `generated`."""
    rel = Path(os.path.relpath(generated.resolve(), config_dir.resolve()))
    lines = [
        "# Written by `aispend demo` for the files of `aispend generate`.",
        "sources:",
    ]
    for name, kind, location, trailing in DEMO_SOURCES:
        lines += [
            f"  - name: {name}",
            f"    kind: {kind}",
            f"    location: {(rel / location).as_posix()}",
        ]
        if trailing:
            lines.append(f"    trailing_days: {trailing}")
    return "\n".join(lines) + "\n"


def write_demo_sources(generated: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(demo_sources_yaml(generated, path.parent), encoding="utf-8")
    return path


# The defaults of docs/examples/alerts.yaml, with the dollar gates scaled to the demo's
# traffic (about $12 a day in total, a few dollars per feature): at the real defaults ($10
# impact) no demo feature could ever alert.
DEMO_ALERTS_YAML = """\
# Written by `aispend demo`: alert settings for the generated data (docs/alerts.md).
# Dollar gates are a tenth of the defaults: the demo spends about $12 a day.
detection:
  min_impact_usd: 1
  new_spend_daily_usd: 2.5
  new_spend_total_usd: 10
budgets:
  - {feature: code-review, daily_usd: 5, monthly_usd: 100}
  - {total: true, monthly_usd: 500}
rate_limits:
  - {provider: openai, rpm: 60, tpm: 500000}
  - {provider: anthropic, rpm: 60}
email:
  from: aispend-demo@localhost
"""


def write_demo_alerts(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_ALERTS_YAML, encoding="utf-8")
    return path
