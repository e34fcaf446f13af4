"""The pricing catalog's curated data, `validate_catalog`, precedence, effective dating, and the
`show_prices` / `diff_catalog` views."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data import providers as GENAI_PROVIDERS
from genai_prices.data_snapshot import get_snapshot

from pricing_catalog.catalog import BUILTIN_DIR, Catalog
from pricing_catalog.errors import CatalogError, CatalogErrors
from pricing_catalog.inspect import diff_catalog, show_prices
from pricing_catalog.lookup import KEY_SCHEMA, resolve_keys
from pricing_catalog.matching import match_model
from pricing_catalog.units import UNITS_BY_NAME
from pricing_catalog.validate import validate_catalog
from tests.conftest import canonical_frame
from transforms.reprice import reprice

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONTRACTS = ROOT / "docs" / "examples" / "contracts.yaml"
D = dt.date.fromisoformat


# --------------------------------------------------------------------------- helpers


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `needle`."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return hits[nth - 1]


def only_error(errors: list[CatalogError]) -> CatalogError:
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def standard(rows: list[dict[str, Any]], batch: bool = False, variant: str = "") -> dict[str, Any]:
    """The one row of show_prices output for tier 'default', whole day, base band."""
    picked = [
        r
        for r in rows
        if r["service_tier"] == "default"
        and r["batch"] is batch
        and r["media_variant"] == variant
        and r["band_above"] == -1
    ]
    assert len(picked) == 1, picked
    return picked[0]


def lookup(
    catalog: Catalog, model_key: str, day: dt.date, variant: str = "", batch: bool = False
) -> dict[str, Any]:
    keys = pl.DataFrame(
        [
            {
                "model_key": model_key,
                "price_tier": "default",
                "price_batch": batch,
                "media_variant": variant,
                "day": day,
                "region_key": "",
            }
        ],
        schema=KEY_SCHEMA,
    )
    rows = resolve_keys(catalog, keys).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture(scope="module")
def builtin_errors() -> list[CatalogError]:
    return validate_catalog([])


# --------------------------------------------------------------------------- built-in data


def test_builtin_catalog_validates_with_zero_errors(builtin_errors: list[CatalogError]) -> None:
    assert [str(e) for e in builtin_errors] == []


def test_example_contracts_validate_and_load(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_CONTRACTS, tmp_path / "contracts.yaml")
    assert [str(e) for e in validate_catalog([tmp_path])] == []
    catalog = Catalog.load([tmp_path])
    assert {t.name for t in catalog.contracts} == {
        "openai-enterprise-2026",
        "acme-reseller-sonnet-4-5",
        "google-eu-data-residency",
        "bedrock-batch",
    }


def test_every_curated_row_cites_its_source_and_keeps_it_out_of_price_flags(
    catalog: Catalog,
) -> None:
    curated = [r for r in catalog.rows if r.source == "curated"]
    assert curated
    for row in curated:
        assert row.extra.get("note"), row.origin
        # PriceRow.note becomes the repriced row's price_flags: only machine flags belong there.
        assert row.note in (None, "batch_rate_not_in_catalog"), row.origin


def test_curated_media_rows_never_shadow_genai_token_prices(catalog: Catalog) -> None:
    genai_ids = {(p.id, m.id.lower()) for p in GENAI_PROVIDERS for m in p.models}
    for row in catalog.rows:
        if row.source == "curated" and (row.provider, row.model_id) in genai_ids:
            # Allowed only as a media variant: its own series, next to the token series.
            assert row.media_variant, row.origin


@pytest.mark.parametrize(
    ("provider", "model", "model_key"),
    [
        ("bfl", "flux-1-schnell", "bfl/flux-1-schnell"),
        ("bfl", "black-forest-labs/flux-schnell", "bfl/flux-1-schnell"),
        ("replicate", "black-forest-labs/flux-schnell", "bfl/flux-1-schnell"),
        ("google", "imagen-4.0-generate-preview-06-06", "google/imagen-4.0-generate-001"),
        ("google", "imagen-4.0-fast-generate-001", "google/imagen-4.0-fast-generate-001"),
        ("google", "veo-3.0-fast-generate-001", "google/veo-3.0-fast-generate-001"),
        ("openai", "sora-2-2025-12-08", "openai/sora-2"),
        ("openai", "sora-2-pro", "openai/sora-2-pro"),
        ("openai", "dall-e-3", "openai/dall-e-3"),
        ("openai", "gpt-image-1.5", "openai/gpt-image-1.5"),
        ("minimax", "MiniMax-Hailuo-2.3-Fast", "minimax/minimax-hailuo-2.3-fast"),
        ("bytedance", "doubao-seedance-2-0-260128", "bytedance/seedance-2.0-pro"),
        ("google", "models/gemini-2.5-pro", "google/gemini-2.5-pro"),
        ("openai", "whisper-1", "openai/whisper-1"),
    ],
)
def test_logged_media_model_strings_resolve(
    catalog: Catalog, provider: str, model: str, model_key: str
) -> None:
    assert match_model(catalog, provider, model).model_key == model_key


def test_every_builtin_alias_is_needed_and_resolves(catalog: Catalog) -> None:
    builtin = [a for a in catalog.aliases if a.origin.startswith(str(BUILTIN_DIR))]
    assert builtin
    snapshot = get_snapshot()
    for alias in builtin:
        assert not any(ch in alias.pattern for ch in "*?["), "test needs literal alias patterns"
        with pytest.raises(LookupError):
            snapshot.find_provider_model(alias.pattern, None, alias.provider, None)
        m = match_model(catalog, alias.provider, alias.pattern)
        assert m.match_kind == "alias" and m.model_key is not None, alias


@pytest.mark.parametrize(
    ("model_key", "variant", "unit", "price"),
    [
        ("bfl/flux-1-schnell", "1024x1024|*", "per_image", "0.003"),
        ("google/imagen-4.0-generate-001", "", "per_image", "0.04"),
        ("stability/stable-image-ultra", "", "per_image", "0.08"),
        ("openai/gpt-image-1.5", "1024x1024|high", "per_image", "0.133"),
        ("openai/gpt-image-1.5", "*|low", "per_image", "0.009"),
        ("openai/dall-e-3", "", "per_image", "0.04"),
        ("openai/dall-e-3", "1024x1024|hd", "per_image", "0.08"),
        ("openai/dall-e-3", "1792x1024|hd", "per_image", "0.12"),
        ("openai/dall-e-3", "1792x1024|*", "per_image", "0.08"),
        ("openai/sora-2", "720p", "per_video_second", "0.1"),
        ("openai/sora-2-pro", "1792x1024", "per_video_second", "0.5"),
        ("minimax/minimax-hailuo-2.3-fast", "768p", "per_video_second", "0.0317"),
        ("minimax/minimax-hailuo-2.3-fast", "1080p", "per_video_second", "0.055"),
        ("openai/whisper-1", "", "per_audio_second", "0.0001"),
    ],
)
def test_media_prices_by_variant(
    catalog: Catalog, model_key: str, variant: str, unit: str, price: str
) -> None:
    # The lookup falls back from the logged variant to broader ones, as repricing does.
    got = lookup(catalog, model_key, D("2026-06-01"), variant)
    assert got["lookup_miss"] is None, got
    assert got[UNITS_BY_NAME[unit].rate_column] == Decimal(price)


def test_sora_2_pro_without_resolution_is_unpriced_not_guessed(catalog: Catalog) -> None:
    assert (
        lookup(catalog, "openai/sora-2-pro", D("2026-01-01"))["lookup_miss"]
        == "no_price_for_variant"
    )


def test_whisper_audio_seconds_agree_with_genai_prices(catalog: Catalog) -> None:
    """genai-prices quotes whisper-1 per audio hour; the catalog turns that into seconds."""
    expected = calc_price(
        Usage(audio_seconds=90), model_ref="whisper-1", provider_id="openai"
    ).total_price
    frame = canonical_frame(
        [
            {
                "request_id": "a1",
                "started_at": dt.datetime(2025, 10, 1, 12, tzinfo=dt.UTC),
                "provider": "openai",
                "model": "whisper-1",
                "modality": "audio",
                "audio_seconds": 90.0,
            }
        ]
    )
    out = reprice(frame.lazy(), catalog).collect()
    assert out["unpriced_reason"][0] is None
    assert out["cost_usd"][0] == expected == Decimal("0.009")


# --------------------------------------------------------------------------- effective dating


@pytest.mark.parametrize(
    ("day", "price"),
    [
        ("2025-07-17", "0.75"),
        ("2025-09-08", "0.75"),
        ("2025-09-09", "0.40"),
        ("2026-03-01", "0.40"),
    ],
)
def test_veo_3_price_cut_is_picked_by_date(catalog: Catalog, day: str, price: str) -> None:
    row = standard(show_prices(catalog, "google", "veo-3.0-generate-001", D(day)))
    assert row["rates"] == {"per_video_second": Decimal(price)}
    assert row["source"] == "curated"


def test_media_price_before_launch_is_a_lookup_miss(catalog: Catalog) -> None:
    assert show_prices(catalog, "google", "veo-3.0-generate-001", D("2025-07-16")) == []
    assert (
        lookup(catalog, "google/veo-3.0-generate-001", D("2025-07-16"))["lookup_miss"]
        == "no_price_at_date"
    )


def test_repricing_uses_each_requests_own_day(catalog: Catalog) -> None:
    frame = canonical_frame(
        [
            {
                "request_id": f"v{i}",
                "started_at": dt.datetime.fromisoformat(ts),
                "provider": "vertex_ai",
                "model": "veo-3.0-generate-001",
                "modality": "video",
                "video_seconds": 8.0,
                "video_resolution": "1080p",
            }
            for i, ts in enumerate(["2025-09-08T23:59:59+00:00", "2025-09-09T00:00:00+00:00"])
        ]
    )
    out = reprice(frame.lazy(), catalog).collect().sort("request_id")
    assert out["unpriced_reason"].to_list() == [None, None]
    assert out["cost_video_usd"].to_list() == [Decimal("6.00"), Decimal("3.20")]


# --------------------------------------------------------------------------- precedence


@pytest.fixture(scope="module")
def layered(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """gpt-4o priced by genai-prices, a curated file for Feb-Apr 2025 and an override for March."""
    d = tmp_path_factory.mktemp("catalog")
    write(
        d / "curated.yaml",
        """
        prices:
          - provider: openai
            model: gpt-4o
            valid_from: 2025-02-01
            valid_to: 2025-05-01
            input_mtok: 2.00
            output_mtok: 8.00
            note: test curated row
        """,
    )
    write(
        d / "overrides" / "march.yaml",
        """
        prices:
          - provider: openai
            model: gpt-4o
            valid_from: 2025-03-01
            valid_to: 2025-04-01
            input_mtok: 1.00
            output_mtok: 4.00
            note: test override row
        """,
    )
    assert validate_catalog([d]) == []
    return Catalog.load([d])


@pytest.mark.parametrize(
    ("day", "source", "rates"),
    [
        ("2025-01-31", "genai-prices", None),
        ("2025-02-01", "curated", ("2.00", "8.00")),
        ("2025-02-28", "curated", ("2.00", "8.00")),
        ("2025-03-01", "override", ("1.00", "4.00")),
        ("2025-03-31", "override", ("1.00", "4.00")),
        ("2025-04-01", "curated", ("2.00", "8.00")),
        ("2025-05-01", "genai-prices", None),
    ],
)
def test_override_beats_curated_and_genai_for_exactly_its_dates(
    layered: Catalog, catalog: Catalog, day: str, source: str, rates: tuple[str, str] | None
) -> None:
    row = standard(show_prices(layered, "openai", "gpt-4o", D(day)))
    assert row["source"] == source
    if rates is None:  # outside the YAML rows genai-prices applies, unchanged
        assert row["rates"] == standard(show_prices(catalog, "openai", "gpt-4o", D(day)))["rates"]
    else:
        assert (row["rates"]["input_mtok"], row["rates"]["output_mtok"]) == tuple(
            map(Decimal, rates)
        )


def test_override_reprices_a_request(layered: Catalog) -> None:
    frame = canonical_frame(
        [
            {
                "request_id": "r1",
                "started_at": dt.datetime(2025, 3, 15, 9, tzinfo=dt.UTC),
                "provider": "openai",
                "model": "gpt-4o-2024-08-06",
                "input_tokens": 1_000_000,
                "output_tokens": 500_000,
            }
        ]
    )
    out = reprice(frame.lazy(), layered).collect()
    assert out["cost_usd"][0] == Decimal("3.00")  # 1M x $1 + 0.5M x $4
    assert out["price_id"][0].startswith("override:openai/gpt-4o:2025-03-01")


# --------------------------------------------------------------------------- validate: each error


ROW = """
  - provider: acme
    model: {model}
    valid_from: {valid_from}
    input_mtok: 1
    output_mtok: 2
"""


def test_overlap_is_reported_at_the_later_row_with_the_earlier_location(tmp_path: Path) -> None:
    f = write(
        tmp_path / "acme.yaml",
        """
        prices:
          - provider: acme
            model: widget-1
            valid_from: 2025-01-01
            valid_to: 2025-07-01
            input_mtok: 1
            output_mtok: 2
          - provider: acme
            model: widget-1
            valid_from: 2025-06-01
            input_mtok: 0.5
            output_mtok: 1
        """,
    )
    e = only_error(validate_catalog([tmp_path]))
    assert (e.path, e.line) == (str(f), line_of(f, "- provider", 2))
    assert f"overlaps with {f}:{line_of(f, '- provider', 1)}" in e.message
    assert "acme/widget-1" in e.message


def test_a_tier_row_beats_an_every_tier_row_only_with_the_same_valid_from(tmp_path: Path) -> None:
    f = write(
        tmp_path / "acme.yaml",
        """
        prices:
          - provider: acme
            model: widget-1
            valid_from: 2025-01-01
            input_mtok: 1
          - provider: acme
            model: widget-1
            service_tier: flex
            valid_from: 2025-01-01
            input_mtok: 0.5
          - provider: acme
            model: widget-1
            service_tier: priority
            valid_from: 2025-06-01
            input_mtok: 2
        """,
    )
    # The flex row replaces the every-tier row for flex; the priority row starts later, so
    # both it and the every-tier row would price priority requests from June on.
    e = only_error(validate_catalog([tmp_path]))
    assert (e.path, e.line) == (str(f), line_of(f, "- provider", 3))
    assert f"overlaps with {f}:{line_of(f, '- provider', 1)}" in e.message


def test_rows_of_other_tiers_batch_variants_or_sources_do_not_overlap(tmp_path: Path) -> None:
    write(
        tmp_path / "acme.yaml",
        """
        prices:
          - {provider: acme, model: widget-1, service_tier: default, input_mtok: 1}
          - {provider: acme, model: widget-1, service_tier: flex, input_mtok: 0.5}
          - {provider: acme, model: widget-1, service_tier: default, batch: true, input_mtok: 0.5}
          - {provider: acme, model: widget-1, image_quality: hd, per_image: 0.1}
          - {provider: acme, model: widget-1, image_quality: standard, per_image: 0.05}
        """,
    )
    write(
        tmp_path / "overrides" / "o.yaml",
        "prices:\n  - {provider: acme, model: widget-1, input_mtok: 2}\n",
    )
    assert validate_catalog([tmp_path]) == []


def test_gap_between_rows_is_reported(tmp_path: Path) -> None:
    f = write(
        tmp_path / "acme.yaml",
        """
        prices:
          - provider: acme
            model: widget-1
            valid_from: 2025-01-01
            valid_to: 2025-02-01
            per_image: 0.1
          - provider: acme
            model: widget-1
            valid_from: 2025-03-01
            per_image: 0.08
        """,
    )
    e = only_error(validate_catalog([tmp_path]))
    assert (e.path, e.line) == (str(f), line_of(f, "- provider", 2))
    assert "no price from 2025-02-01 to 2025-03-01" in e.message


def test_gap_filled_by_a_lower_source_is_not_an_error(tmp_path: Path) -> None:
    # genai-prices prices openai/gpt-4o on every day; a curated file gets the gap from it.
    write(
        tmp_path / "acme.yaml",
        """
        prices:
          - {provider: openai, model: gpt-4o, valid_from: 2025-01-01, valid_to: 2025-02-01,
             input_mtok: 1}
          - {provider: openai, model: gpt-4o, valid_from: 2025-03-01, input_mtok: 1}
          - {provider: acme, model: widget-1, valid_from: 2025-01-01, per_image: 0.1}
        """,
    )
    # An override's gap is priced by the curated row beneath it.
    write(
        tmp_path / "overrides" / "o.yaml",
        """
        prices:
          - {provider: acme, model: widget-1, valid_from: 2025-01-01, valid_to: 2025-02-01,
             per_image: 0.2}
          - {provider: acme, model: widget-1, valid_from: 2025-03-01, per_image: 0.3}
        """,
    )
    assert validate_catalog([tmp_path]) == []


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("per_image: -0.01", "per_image: negative price -0.01"),
        ("per_token: 1", "unknown unit 'per_token'"),
        (
            "valid_from: 2025-13-01\n    per_image: 0.1",
            "valid_from: expected a date YYYY-MM-DD, got '2025-13-01'",
        ),
        ("valid_to: soon\n    per_image: 0.1", "valid_to: expected a date YYYY-MM-DD, got 'soon'"),
        (
            "valid_from: 2025-05-01\n    valid_to: 2025-04-01\n    per_image: 0.1",
            "is not after valid_from",
        ),
        (
            "service_tier: turbo\n    per_image: 0.1",
            "service_tier: expected default, flex or priority",
        ),
        ("note: no price at all", "price row has no price"),
    ],
)
def test_parse_errors_name_file_and_entry_line(tmp_path: Path, entry: str, fragment: str) -> None:
    f = tmp_path / "acme.yaml"
    f.write_text(
        "prices:\n"
        "  - provider: acme\n    model: good\n    per_image: 0.1\n"
        f"  - provider: acme\n    model: bad\n    {entry}\n"
    )
    e = only_error(validate_catalog([tmp_path]))
    assert (e.path, e.line) == (str(f), 5)
    assert fragment in e.message


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("prices:\n  - provider: acme\n    model: [unclosed\n    per_image: 0.1\n")
    e = only_error(validate_catalog([tmp_path]))
    assert e.path == str(f) and e.line is not None
    assert e.message.startswith("invalid YAML")
    assert "\n" not in str(e)


def test_band_row_without_base_row(tmp_path: Path) -> None:
    f = write(
        tmp_path / "acme.yaml",
        """
        prices:
          - provider: acme
            model: widget-1
            valid_from: 2025-01-01
            input_mtok: 3
          - provider: acme
            model: widget-1
            valid_from: 2025-01-01
            above_input_tokens: 200000
            input_mtok: 6
          - provider: acme
            model: widget-2
            valid_from: 2025-01-01
            above_input_tokens: 200000
            input_mtok: 6
        """,
    )
    e = only_error(validate_catalog([tmp_path]))
    assert (e.path, e.line) == (str(f), line_of(f, "model: widget-2") - 1)
    assert "acme/widget-2" in e.message and "no base row" in e.message


def test_alias_to_a_model_the_catalog_does_not_know(tmp_path: Path) -> None:
    f = write(
        tmp_path / "acme.yaml",
        """
        prices:
          - {provider: acme, model: widget-1, per_image: 0.1}
        aliases:
          - provider: acme
            pattern: widget-one*
            canonical: acme/widget-1
          - provider: openai
            pattern: my-gpt
            canonical: gpt-4o
          - provider: acme
            pattern: widget-x*
            canonical: acme/no-such-model
        """,
    )
    e = only_error(validate_catalog([tmp_path]))
    assert (e.path, e.line) == (str(f), line_of(f, "pattern: widget-x") - 1)
    assert "acme/no-such-model is not in the catalog" in e.message


def test_match_glob_capturing_another_model(tmp_path: Path) -> None:
    f = write(
        tmp_path / "acme.yaml",
        """
        prices:
          - {provider: acme, model: widget-1, match: ["widget*"], per_image: 0.1}
          - {provider: acme, model: widget-2, per_image: 0.2}
          - {provider: openai, model: my-image-model, match: ["gpt-4o*"], per_image: 0.1}
        """,
    )
    errors = validate_catalog([tmp_path])
    assert [(e.path, e.line) for e in errors] == [(str(f), 2), (str(f), 4)]
    assert "'widget*' of acme/widget-1 also matches model acme/widget-2" in errors[0].message
    assert "also matches model genai-prices openai/gpt-4o" in errors[1].message


def test_contract_terms_of_one_kind_must_not_overlap(tmp_path: Path) -> None:
    f = write(
        tmp_path / "contracts.yaml",
        """
        contracts:
          - name: first-half
            provider: openai
            valid_from: 2026-01-01
            valid_to: 2026-07-01
            discount_pct: 10
          - name: renewal
            provider: openai
            valid_from: 2026-06-01
            discount_pct: 15
          - name: batch
            provider: openai
            valid_from: 2026-01-01
            batch_discount_pct: 50
          - name: us
            provider: openai
            regions: ["us-*"]
            region_multiplier: 1.05
          - name: eu
            provider: openai
            regions: ["eu", "eu-*"]
            region_multiplier: 1.1
          - name: eu-west
            provider: openai
            regions: ["eu-west-1"]
            region_multiplier: 1.2
        """,
    )
    errors = validate_catalog([tmp_path])
    assert [(e.path, e.line) for e in errors] == [
        (str(f), line_of(f, "name: renewal")),
        (str(f), line_of(f, "name: eu-west")),
    ]
    assert (
        f"overlaps with 'first-half' at {f}:{line_of(f, 'name: first-half')}" in errors[0].message
    )
    assert "region multiplier" in errors[1].message and "'eu'" in errors[1].message


def test_every_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.yaml",
        """
        prices:
          - {provider: acme, model: w1, per_image: -1}
          - {provider: acme, model: w2, per_pixel: 1}
          - {provider: acme, model: w3, valid_from: 2025-01-01, valid_to: 2025-02-01, per_image: 1}
          - {provider: acme, model: w3, valid_from: 2025-01-15, per_image: 1}
        aliases:
          - {provider: acme, pattern: nope, canonical: acme/nothing}
        """,
    )
    write(tmp_path / "b.yaml", "prices: [\n")
    errors = validate_catalog([tmp_path, tmp_path / "missing"])
    where = [(Path(e.path).name, e.line) for e in errors]
    assert where == [
        ("a.yaml", 2),
        ("a.yaml", 3),
        ("a.yaml", 5),
        ("a.yaml", 7),
        ("b.yaml", 2),
        ("missing", None),
    ]
    assert all("\n" not in str(e) for e in errors)
    assert str(f) in str(errors[0])


# --------------------------------------------------------------------------- show / diff


def test_show_prices_lists_every_context_valid_on_the_day(catalog: Catalog) -> None:
    rows = show_prices(catalog, "openai", "o3-2025-04-16", D("2025-07-01"))
    assert {(r["service_tier"], r["batch"]) for r in rows} >= {
        (None, False),
        ("default", False),
        ("default", True),
    }
    row = standard(rows)
    assert row["model_key"] == "openai/o3" and row["match_kind"] == "genai"
    assert row["rates"]["input_mtok"] == Decimal("2") and row["rates"]["output_mtok"] == Decimal(
        "8"
    )
    assert row["valid_from"] == D("2025-06-10") and row["source"] == "genai-prices"
    assert all(isinstance(v, Decimal) for v in row["rates"].values())
    before = standard(show_prices(catalog, "openai", "o3", D("2025-06-01")))
    assert before["rates"]["input_mtok"] == Decimal("10") and before["valid_to"] == D("2025-06-10")


def test_show_prices_media_variants_and_unknown_models(catalog: Catalog) -> None:
    rows = show_prices(catalog, "openai", "dall-e-3", D("2026-01-01"))
    hd = standard(rows, variant="1792x1024|hd")
    assert hd["rates"] == {"per_image": Decimal("0.12")}
    assert hd["note"] and hd["flags"] is None
    assert re.fullmatch(r".*/pricing_catalog/data/media\.yaml:\d+", hd["origin"])
    assert show_prices(catalog, "openai", "gpt-9-ultra", D("2026-01-01")) == []
    assert show_prices(catalog, "nobody", "nothing", D("2026-01-01")) == []


def test_show_prices_includes_active_contract_terms(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_CONTRACTS, tmp_path / "contracts.yaml")
    catalog = Catalog.load([tmp_path])
    in_2026 = standard(show_prices(catalog, "openai", "gpt-4o", D("2026-03-01")))
    assert in_2026["contract_terms_applied"] == ["openai-enterprise-2026"]
    assert [t["name"] for t in in_2026["contract_terms"]] == ["openai-enterprise-2026"]
    assert in_2026["contract_rates"]["input_mtok"] == in_2026["rates"]["input_mtok"] * Decimal(
        "0.875"
    )
    in_2025 = standard(show_prices(catalog, "openai", "gpt-4o", D("2025-12-31")))
    assert in_2025["contract_terms"] == [] and in_2025["contract_rates"] == in_2025["rates"]

    sonnet = standard(
        show_prices(catalog, "anthropic", "claude-sonnet-4-5-20250929", D("2026-01-15"))
    )
    assert sonnet["contract_rates"]["input_mtok"] == Decimal("1.80")
    assert sonnet["contract_rates"]["output_mtok"] == Decimal("9.00")
    assert sonnet["contract_rates"]["cache_write_1h_mtok"] == sonnet["rates"]["cache_write_1h_mtok"]

    bedrock_batch = standard(
        show_prices(catalog, "aws", "anthropic.claude-sonnet-4-5-20250929-v1:0", D("2026-01-15")),
        batch=True,
    )
    assert bedrock_batch["flags"] == "batch_rate_not_in_catalog"
    assert bedrock_batch["contract_rates"]["input_mtok"] == bedrock_batch["rates"]["input_mtok"] / 2
    regional = {
        t["name"]: t
        for t in standard(show_prices(catalog, "google", "gemini-2.5-pro", D("2026-01-15")))[
            "contract_terms"
        ]
    }
    assert regional["google-eu-data-residency"]["regions"] == ["eu", "eu-*", "europe-*"]


def test_diff_shows_the_o3_price_cut(catalog: Catalog) -> None:
    changes = [
        c
        for c in diff_catalog(catalog, D("2025-06-01"), D("2025-07-01"))
        if c["model_key"] == "openai/o3"
    ]
    assert [c["batch"] for c in changes] == [False, True]
    std = changes[0]
    assert std["change"] == "changed" and std["service_tier"] == "default"
    assert (std["old"]["input_mtok"], std["new"]["input_mtok"]) == (Decimal("10"), Decimal("2"))
    assert (std["old"]["output_mtok"], std["new"]["output_mtok"]) == (Decimal("40"), Decimal("8"))
    assert "input_mtok" in std["units"] and "cache_read_mtok" not in std["units"]


def test_diff_shows_added_and_changed_media_prices(catalog: Catalog) -> None:
    changes = diff_catalog(catalog, D("2025-09-01"), D("2025-11-01"))
    by_key = {(c["model_key"], c["batch"], c["media_variant"]): c for c in changes}
    veo = by_key[("google/veo-3.0-generate-001", False, "")]
    assert veo["change"] == "changed"
    assert (veo["old"], veo["new"]) == (
        {"per_video_second": Decimal("0.75")},
        {"per_video_second": Decimal("0.4")},
    )
    sora = by_key[("openai/sora-2", False, "")]
    assert (
        sora["change"] == "added" and sora["old"] is None and sora["units"] == ["per_video_second"]
    )
    assert ("openai/sora-2-pro", True, "1792x1024") in by_key  # batch context is diffed too
    assert diff_catalog(catalog, D("2025-09-01"), D("2025-09-01")) == []


def test_diff_reports_removed_rows(tmp_path: Path, catalog: Catalog) -> None:
    write(
        tmp_path / "acme.yaml",
        """
        prices:
          - {provider: acme, model: w1, valid_from: 2025-01-01, valid_to: 2025-06-01,
             per_image: 0.1}
        """,
    )
    changes = [
        c
        for c in diff_catalog(Catalog.load([tmp_path]), D("2025-05-31"), D("2025-06-01"))
        if c["model_key"] == "acme/w1"
    ]
    assert [(c["change"], c["batch"], c["old"], c["new"]) for c in changes] == [
        ("removed", False, {"per_image": Decimal("0.1")}, None),
        ("removed", True, {"per_image": Decimal("0.1")}, None),
    ]


def test_load_refuses_a_band_row_without_base_row(tmp_path: Path) -> None:
    # Without a base row every prompt at or below 200K tokens would fall between segments.
    f = write(
        tmp_path / "acme.yaml",
        """
        prices:
          - provider: acme
            model: widget-1
            valid_from: 2025-01-01
            input_mtok: 3
          - provider: acme
            model: widget-1
            valid_from: 2025-01-01
            above_input_tokens: 200000
            input_mtok: 6
          - provider: acme
            model: widget-2
            valid_from: 2025-01-01
            service_tier: flex
            input_mtok: 1
          - provider: acme
            model: widget-2
            valid_from: 2025-01-01
            above_input_tokens: 200000
            input_mtok: 2
        """,
    )
    with pytest.raises(CatalogErrors) as info:
        Catalog.load([tmp_path], with_genai=False)
    (e,) = info.value.errors
    assert (e.path, e.line) == (str(f), line_of(f, "model: widget-2", 2) - 1)
    assert "\n" not in str(e)
    assert str(e).startswith(f"{f}:{e.line}: acme/widget-2")
    assert "no base row" in e.message and "default, priority" in e.message
    # the same file with a base row for every tier loads
    f.write_text(f.read_text().replace("    service_tier: flex\n", ""), encoding="utf-8")
    assert Catalog.load([tmp_path], with_genai=False).rows
