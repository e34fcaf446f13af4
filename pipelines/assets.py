"""Daily assets. Foundation stage: canonical requests of a day, repriced.

The orchestration issue grows this into the full chain (raw sources -> normalized ->
priced -> roll-ups -> warehouse); reconciliation, anomalies and reports hang off it.
"""

import dagster as dg
import polars as pl

from pipelines.partitions import daily_partitions
from pipelines.resources import PricingCatalogResource, RequestFilesResource
from transforms.canonical_reader import read_canonical
from transforms.reprice import reprice


@dg.asset(partitions_def=daily_partitions, group_name="pricing", kinds={"polars"})
def priced_requests(
    context: dg.AssetExecutionContext,
    request_files: RequestFilesResource,
    pricing_catalog: PricingCatalogResource,
) -> dg.MaterializeResult:
    """Every canonical request that started on the partition's UTC day, repriced."""
    day = context.partition_key
    requests = read_canonical(request_files.path_for(day)).filter(
        pl.col("started_at").dt.date() == pl.lit(day).str.to_date()
    )
    priced = reprice(requests, pricing_catalog.load()).collect()
    unpriced = priced.filter(pl.col("unpriced_reason").is_not_null())
    total = priced.get_column("cost_usd").sum()
    return dg.MaterializeResult(
        metadata={
            "rows": priced.height,
            "priced": priced.height - unpriced.height,
            "unpriced": unpriced.height,
            "cost_usd": str(total if total is not None else 0),
        }
    )
