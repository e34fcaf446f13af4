"""Synthetic, deterministic AI-spend data: ground-truth requests, native gateway logs,
provider usage/cost reports, FOCUS and invoices that agree with each other, plus injected
faults recorded in a manifest.

    from datagen import generate, FaultSpec
    manifest = generate(Path("out"), days=35, requests_per_day=10_000, seed=7,
                        start=date(2025, 9, 5), faults=FaultSpec())

Modules: org (the simulated organisation), traffic (ground truth), gateways (native logs),
billing (provider reports, FOCUS, invoices), faults (fault injection), jsonio (exact
JSON/CSV), build (orchestration and manifest), cli (`aispend generate` arguments).
"""

from datagen.build import DEFAULT_START, GenerationManifest, generate
from datagen.cli import generate_from_args, main
from datagen.faults import FaultSpec
from datagen.traffic import Spike

__all__ = [
    "DEFAULT_START",
    "FaultSpec",
    "GenerationManifest",
    "Spike",
    "generate",
    "generate_from_args",
    "main",
]
