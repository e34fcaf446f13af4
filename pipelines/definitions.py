"""The single Dagster definitions root of aispend."""

import os

import dagster as dg

from pipelines.assets import priced_requests
from pipelines.resources import PricingCatalogResource, RequestFilesResource


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[priced_requests],
        resources={
            "pricing_catalog": PricingCatalogResource(
                catalog_dirs=os.environ.get("AISPEND_CATALOG_DIR", "")
            ),
            "request_files": RequestFilesResource(
                pattern=os.environ.get("AISPEND_REQUESTS", "docs/examples/sample_requests.jsonl")
            ),
        },
    )
