"""The partitions every asset shares: UTC days, and calendar months for invoices.

`daily_partitions` is the one daily object all daily assets, checks, jobs and the schedule
use. Invoices are monthly by nature (one invoice per provider and billing month, issued
after the month ends), so `invoice_lines` has its own `monthly_partitions`: a daily key
would rewrite the same month thirty times and could not express "the September invoice
arrived". Keys: `YYYY-MM-DD`; a month's key is its first day. The first partition is
AISPEND_START_DATE (default 2025-01-01); today's (incomplete) day is included so late runs
and tests of recent data work.
"""

import os

import dagster as dg

DAILY_START = os.environ.get("AISPEND_START_DATE", "").strip() or "2025-01-01"

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=DAILY_START, timezone="UTC", end_offset=1
)

monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=DAILY_START[:8] + "01", timezone="UTC", end_offset=1
)
