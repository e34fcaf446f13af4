"""Billable units a price row can carry, and how each one turns usage into money.

Token rates are quoted per million tokens, like every provider's price page; the other
units per single unit. Rows store the per-unit rate as an exact Decimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Unit:
    name: str  # key in YAML files and in the catalog, e.g. "input_mtok"
    component: str  # cost component it prices, e.g. "input"
    per: int  # usage units per quoted price (1_000_000 for per-MTok prices)
    rate_column: str  # column of the price table holding USD per single unit

    def per_unit(self, quoted: Decimal) -> Decimal:
        return quoted / self.per


UNITS: tuple[Unit, ...] = (
    Unit("input_mtok", "input", 1_000_000, "input_usd_per_token"),
    Unit("cache_read_mtok", "cache_read", 1_000_000, "cache_read_usd_per_token"),
    Unit("cache_write_mtok", "cache_write", 1_000_000, "cache_write_usd_per_token"),
    Unit("cache_write_1h_mtok", "cache_write_1h", 1_000_000, "cache_write_1h_usd_per_token"),
    Unit("output_mtok", "output", 1_000_000, "output_usd_per_token"),
    Unit("reasoning_mtok", "reasoning", 1_000_000, "reasoning_usd_per_token"),
    Unit("per_request", "request", 1, "request_usd"),
    Unit("per_image", "image", 1, "image_usd"),
    Unit("per_video_second", "video", 1, "video_second_usd"),
    Unit("per_audio_second", "audio", 1, "audio_second_usd"),
)
UNITS_BY_NAME = {u.name: u for u in UNITS}
RATE_COLUMNS = tuple(u.rate_column for u in UNITS)
COMPONENTS = tuple(u.component for u in UNITS)

# A component with no rate of its own is billed at its parent's rate, exactly as providers
# (and genai-prices' unit registry) do: cache reads without a cache price cost input price.
PARENT_UNIT: dict[str, str] = {
    "cache_read_mtok": "input_mtok",
    "cache_write_mtok": "input_mtok",
    "cache_write_1h_mtok": "cache_write_mtok",
    "reasoning_mtok": "output_mtok",
}


def resolve_chain(rates: dict[str, Decimal]) -> dict[str, Decimal]:
    """Fill each unit's rate from its nearest priced ancestor."""
    resolved = dict(rates)
    for name in ("cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok", "reasoning_mtok"):
        if name in resolved:
            continue
        parent = PARENT_UNIT[name]
        while parent not in resolved and parent in PARENT_UNIT:
            parent = PARENT_UNIT[parent]
        if parent in resolved:
            resolved[name] = resolved[parent]
    return resolved
