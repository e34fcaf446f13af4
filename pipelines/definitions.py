"""The single Dagster definitions root of aispend: assets, checks, jobs, schedule, sensors.

Resources come from environment variables (pipelines.resources; the alerts settings from
pipelines.alerting); the nightly late-data window from AISPEND_LATE_DAYS. Loaded by
`workspace.yaml`, `[tool.dg]` and `aispend run`.
"""

import dagster as dg

from pipelines.alerting import alerts_from_env
from pipelines.assets import (
    anomalies,
    daily_report,
    ingest_requests_asset,
    invoice_lines,
    monthly_reconciliation,
    priced_requests,
    provider_usage,
    raw_gateway_logs,
    raw_invoices,
    raw_provider_reports,
    reconciliation_daily,
    request_rollups,
    warehouse_daily,
    warehouse_fresh,
    warehouse_invoices,
)
from pipelines.automation import (
    billing_files_sensor,
    build_nightly_schedule,
    daily_job,
    failed_check_notice,
    freshness_job,
    freshness_schedule,
    invoice_job,
    late_days,
    outbox_job,
    outbox_retry,
    run_failure_notice,
)
from pipelines.resources import resources_from_env


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[
            raw_gateway_logs,
            raw_provider_reports,
            raw_invoices,
            ingest_requests_asset,
            provider_usage,
            priced_requests,
            request_rollups,
            warehouse_daily,
            reconciliation_daily,
            anomalies,
            daily_report,
            invoice_lines,
            warehouse_invoices,
            monthly_reconciliation,
        ],
        asset_checks=[warehouse_fresh],
        jobs=[daily_job, invoice_job, freshness_job, outbox_job],
        schedules=[build_nightly_schedule(late_days()), freshness_schedule, outbox_retry],
        sensors=[billing_files_sensor, run_failure_notice, failed_check_notice],
        resources={**resources_from_env(), "alerts": alerts_from_env()},
    )
