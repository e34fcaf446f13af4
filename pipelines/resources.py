"""Typed resources, configured from environment variables when the definitions load.

| resource           | variable                 | default                                   |
|--------------------|--------------------------|-------------------------------------------|
| `lake`             | `AISPEND_DATA_DIR`       | `./data` (any fsspec URL works)            |
| `sources`          | `AISPEND_CONFIG`         | `{data}/sources.yaml`                      |
| `warehouse`        | `AISPEND_WAREHOUSE_URL`  | `sqlite:///{data}/warehouse.sqlite`        |
| `pricing_catalog`  | `AISPEND_CATALOG_DIR`    | built-in catalog (os.pathsep-separated)    |
| `quality`          | `AISPEND_GX_MAX_ROWS`    | 200,000 rows validated by GX per day       |

Expensive objects (the catalog, the parsed sources.yaml, the SQLAlchemy engine) are built
once per process and per setting, so a 35-day `aispend run` pays for them once.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from pricing_catalog.catalog import Catalog
from sources.config import SourcesConfig, load_sources

DATA_DIR_ENV = "AISPEND_DATA_DIR"
CONFIG_ENV = "AISPEND_CONFIG"
WAREHOUSE_ENV = "AISPEND_WAREHOUSE_URL"
CATALOG_ENV = "AISPEND_CATALOG_DIR"
GX_MAX_ROWS_ENV = "AISPEND_GX_MAX_ROWS"
# A fixed sample above that size: a defect in 3 rows out of 100,000 is in it with 99.75%
# probability ((1 - 3e-5) ** 200_000 = 0.25% to miss it), and it costs ~1 s instead of ~3 s
# for 1M rows. Uniqueness and the unknown-model share are checked exactly, on every row.
DEFAULT_GX_MAX_ROWS = 200_000


def data_dir() -> str:
    return os.environ.get(DATA_DIR_ENV, "").strip() or "./data"


def _is_url(text: str) -> bool:
    return "://" in text


def default_config_path(base: str) -> str:
    return os.environ.get(CONFIG_ENV, "").strip() or f"{base.rstrip('/')}/sources.yaml"


def default_warehouse_url(base: str) -> str:
    url = os.environ.get(WAREHOUSE_ENV, "").strip()
    if url:
        return url
    if _is_url(base) and not base.startswith("file://"):
        raise ValueError(
            f"{DATA_DIR_ENV}={base} is not a local directory: set {WAREHOUSE_ENV} too "
            "(a SQLite warehouse needs a local file)"
        )
    local = Path(base.removeprefix("file://")).resolve()
    return f"sqlite:///{local / 'warehouse.sqlite'}"


class LakeResource(dg.ConfigurableResource):  # type: ignore[misc]
    """The Parquet lake under `base` (`{base}/lake/...`, see lake.store)."""

    base: str = "./data"

    def root(self) -> str:
        if _is_url(self.base):
            return self.base
        return str(Path(self.base).resolve())


class SourcesResource(dg.ConfigurableResource):  # type: ignore[misc]
    """sources.yaml: where every source's files are."""

    config_path: str = "./data/sources.yaml"

    def load(self) -> SourcesConfig:
        return _load_sources(self.config_path, _mtime(self.config_path))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@functools.lru_cache(maxsize=8)
def _load_sources(path: str, _mtime: float) -> SourcesConfig:
    return load_sources(path)


class PricingCatalogResource(dg.ConfigurableResource):  # type: ignore[misc]
    """The pricing catalog: built-in data plus AISPEND_CATALOG_DIR (os.pathsep-separated)."""

    catalog_dirs: str = ""

    def load(self) -> Catalog:
        return _load_catalog(self.catalog_dirs)


@functools.lru_cache(maxsize=4)
def _load_catalog(catalog_dirs: str) -> Catalog:
    return Catalog.load([Path(p) for p in catalog_dirs.split(os.pathsep) if p])


class QualityResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Great Expectations settings: above `max_rows` rows a day is validated on a fixed
    hash sample of that size (GX costs ~6 s per million rows); uniqueness and accounting are
    checked exactly in Polars whatever the size."""

    max_rows: int = DEFAULT_GX_MAX_ROWS
    max_unknown_model_share: float = 0.02


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[misc]
    """The SQL warehouse (warehouse package): migrated once per process, then partition
    replaces, each table in one transaction."""

    url: str = ""

    def engine(self) -> Any:
        return _engine(self.url)

    def replace_partition(self, table: str, partition: Any, frame: pl.DataFrame) -> Any:
        from warehouse.load import replace_partition

        return replace_partition(self.engine(), table, partition, frame)


@functools.lru_cache(maxsize=4)
def _engine(url: str) -> Any:
    from warehouse import make_engine
    from warehouse.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    return engine


def resources_from_env() -> dict[str, Any]:
    base = data_dir()
    return {
        "lake": LakeResource(base=base),
        "sources": SourcesResource(config_path=default_config_path(base)),
        "warehouse": WarehouseResource(url=default_warehouse_url(base)),
        "pricing_catalog": PricingCatalogResource(catalog_dirs=os.environ.get(CATALOG_ENV, "")),
        "quality": QualityResource(
            max_rows=int(os.environ.get(GX_MAX_ROWS_ENV, "") or DEFAULT_GX_MAX_ROWS)
        ),
    }
