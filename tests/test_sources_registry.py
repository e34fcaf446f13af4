"""The source registry lists exactly the adapters that exist, each with its entry points."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from sources.registry import KINDS

ENTRY_POINT = {
    "requests": "to_canonical",
    "provider_usage": "to_usage",
    "invoices": "to_invoice_lines",
}
SOURCES_DIR = Path(__file__).resolve().parent.parent / "sources"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_listed_kind_imports_with_its_entry_points(kind: str) -> None:
    spec = KINDS[kind]
    module = spec.load()
    assert callable(getattr(module, "read", None)), f"{spec.module} has no read()"
    entry = ENTRY_POINT[spec.produces]
    assert callable(getattr(module, entry, None)), f"{spec.module} has no {entry}()"


def test_every_adapter_module_is_listed() -> None:
    """A module declaring a KIND is an adapter; one missing from the registry is unreachable."""
    listed = {spec.module for spec in KINDS.values()}
    adapters = set()
    for path in SOURCES_DIR.glob("*.py"):
        module = importlib.import_module(f"sources.{path.stem}")
        if isinstance(getattr(module, "KIND", None), str) and hasattr(module, "read"):
            adapters.add(module.__name__)
    assert adapters, "no adapter modules found"
    assert adapters <= listed, f"not registered: {sorted(adapters - listed)}"
