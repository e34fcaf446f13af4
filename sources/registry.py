"""Every source kind aispend reads, and what it produces.

requests:        gateway logs -> canonical requests (normalized / duplicates / quarantine)
provider_usage:  provider usage and cost reports -> canonical daily provider usage
invoices:        invoice lines -> canonical invoice lines
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class SourceKind:
    kind: str
    module: str
    produces: str  # requests | provider_usage | invoices
    description: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


KINDS: dict[str, SourceKind] = {
    k.kind: k
    for k in (
        SourceKind("canonical", "sources.canonical", "requests", "canonical JSONL/CSV/Parquet"),
        SourceKind(
            "litellm", "sources.litellm", "requests", "LiteLLM spend logs (export or table)"
        ),
        SourceKind("helicone", "sources.helicone", "requests", "Helicone request export"),
        SourceKind("openrouter", "sources.openrouter", "requests", "OpenRouter generation records"),
        SourceKind("cloudflare", "sources.cloudflare", "requests", "Cloudflare AI Gateway logs"),
        SourceKind("otel", "sources.otel_genai", "requests", "OpenTelemetry GenAI spans (JSON)"),
        SourceKind(
            "openai_usage", "sources.openai_usage", "provider_usage", "OpenAI Usage API pages"
        ),
        SourceKind(
            "openai_costs", "sources.openai_costs", "provider_usage", "OpenAI Costs API pages"
        ),
        SourceKind(
            "anthropic_usage", "sources.anthropic_usage", "provider_usage", "Anthropic usage report"
        ),
        SourceKind(
            "anthropic_cost", "sources.anthropic_cost", "provider_usage", "Anthropic cost report"
        ),
        SourceKind("aws_cur", "sources.aws_cur", "provider_usage", "AWS CUR 2.0 Bedrock lines"),
        SourceKind(
            "gcp_billing", "sources.gcp_billing", "provider_usage", "Google Cloud billing export"
        ),
        SourceKind("focus", "sources.focus", "provider_usage", "FOCUS 1.2 cost and usage file"),
        SourceKind("invoice", "sources.invoices", "invoices", "canonical invoice lines (CSV/JSON)"),
    )
}
