"""The one daily partitions definition every asset shares (UTC days)."""

import dagster as dg

DAILY_START = "2025-01-01"

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=DAILY_START, timezone="UTC", end_offset=1
)
