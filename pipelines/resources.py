"""Typed resources, configured from environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from pricing_catalog.catalog import Catalog


class PricingCatalogResource(dg.ConfigurableResource):
    """The pricing catalog: built-in data plus AISPEND_CATALOG_DIR (os.pathsep-separated)."""

    catalog_dirs: str = ""

    def load(self) -> Catalog:
        dirs = [Path(p) for p in self.catalog_dirs.split(os.pathsep) if p]
        return Catalog.load(dirs)


class RequestFilesResource(dg.ConfigurableResource):
    """Where canonical request files for a day live: {day} is replaced by YYYY-MM-DD."""

    pattern: str = "docs/examples/sample_requests.jsonl"

    def path_for(self, day: str) -> Path:
        return Path(self.pattern.replace("{day}", day))
