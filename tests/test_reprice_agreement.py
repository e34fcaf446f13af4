"""Proof that `reprice` agrees with `genai_prices.calc_price` for every text-token model.

For every model of every provider in the bundled genai-prices data we generate requests
around each of the model's price changes (start dates, UTC time-of-day windows), at and just
past each cliff-tier threshold, in every request context (service tier x batch) and with
random but consistent token usage; all of them go through ONE `reprice` call, and each row's
`list_cost_usd` must equal genai-prices' `total_price` to 1e-12 USD.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl
from genai_prices import Usage, calc_price
from genai_prices.data import providers as GENAI_PROVIDERS
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import (
    ClauseAnd,
    ClauseContains,
    ClauseEndsWith,
    ClauseEquals,
    ClauseOr,
    ClauseRegex,
    ClauseStartsWith,
    ModelPrice,
    PriceCalculation,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from tests.conftest import canonical_frame
from transforms.reprice import reprice

SEED = 20250610
TOLERANCE = Decimal("1e-12")
TIERS = ("default", "flex", "priority")
CONTEXTS = tuple(itertools.product(TIERS, (False, True)))
# genai-prices price keys our canonical token columns carry.
TEXT_TOKEN_KEYS = frozenset(
    {
        "input_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "cache_write_1h_mtok",
        "output_mtok",
        "output_reasoning_mtok",
    }
)
RANDOM_DAYS = (dt.date(2023, 1, 1), dt.date(2026, 12, 31))


# --------------------------------------------------------------------------- model refs


def _regex_example(pattern: str) -> str:
    """One string the (simple, anchored) regex is meant to accept: literals kept, `\\d` -> '1',
    a class -> its first character, optional groups and lookaheads dropped, `{n}` repeated,
    first alternative of a `|`. Verified with re.search by the caller."""
    out: list[str] = []
    last: list[str] = []  # the previous atom, for quantifiers
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch in "^$":
            i += 1
            continue
        if ch == "|":
            break
        if ch == "\\":
            nxt = pattern[i + 1]
            atom = "1" if nxt == "d" else ("a" if nxt == "w" else nxt)
            i += 2
        elif ch == "[":
            j = i + 1
            while pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            body = pattern[i + 1 : j]
            atom = "x" if body.startswith("^") else body.lstrip("\\")[:1]
            i = j + 1
        elif ch == "(":
            depth, j = 0, i
            while True:
                if pattern[j] == "\\":
                    j += 2
                    continue
                depth += pattern[j] == "("
                depth -= pattern[j] == ")"
                if depth == 0:
                    break
                j += 1
            body = pattern[i + 1 : j]
            i = j + 1
            if body.startswith(("?!", "?=")):
                continue
            atom = _regex_example(body.removeprefix("?:"))
        elif ch == "{":
            j = pattern.index("}", i)
            count = int(pattern[i + 1 : j].split(",")[0])
            out.extend(last * (count - 1))
            i = j + 1
            continue
        elif ch in "?*":
            if last:
                del out[-len(last) :]
            last = []
            i += 1
            continue
        elif ch == "+":
            i += 1
            continue
        elif ch == ".":
            atom = "x"
            i += 1
        else:
            atom = ch
            i += 1
        last = [atom]
        out.append(atom)
    return "".join(out)


def ref_candidates(clause: Any) -> list[str]:
    """Strings a match clause accepts, most literal first."""
    if isinstance(clause, ClauseEquals):
        return [clause.equals]
    if isinstance(clause, ClauseStartsWith):
        return [clause.starts_with, clause.starts_with + "-x"]
    if isinstance(clause, ClauseEndsWith):
        return [clause.ends_with, "x-" + clause.ends_with]
    if isinstance(clause, ClauseContains):
        return [clause.contains, "x-" + clause.contains + "-x"]
    if isinstance(clause, ClauseRegex):
        return [_regex_example(clause.regex)]
    if isinstance(clause, ClauseOr):
        return [c for child in clause.or_ for c in ref_candidates(child)]
    if isinstance(clause, ClauseAnd):
        per_child = [ref_candidates(child) for child in clause.and_]
        singles = [c for cands in per_child for c in cands]
        joined = ["".join(parts) for parts in itertools.product(*per_child)]
        return [c for c in (*singles, *joined) if clause.is_match(c)]
    raise TypeError(f"unknown match clause {clause!r}")


def resolve_ref(provider: Any, model: Any) -> tuple[str | None, str]:
    """A model string genai-prices resolves, for this provider, to exactly this model."""
    snapshot = get_snapshot()
    candidates = [model.id, *ref_candidates(model.match)]
    matching = [c for c in dict.fromkeys(candidates) if c and c == c.strip() and model.is_match(c)]
    if not matching:
        return None, "no ref string derivable from the match clause"
    for ref in matching:
        try:
            _, found = snapshot.find_provider_model(ref, None, provider.id, None)
        except LookupError:
            continue
        if found is model:
            return ref, ""
    return None, f"every ref resolves to another model ({', '.join(matching[:3])})"


# --------------------------------------------------------------------------- model facts


def _all_prices(model: Any) -> list[ModelPrice]:
    out = (
        [model.prices]
        if isinstance(model.prices, ModelPrice)
        else [cp.prices for cp in model.prices]
    )
    return out + [v.prices for v in model.price_variants or ()]


def _constraints(model: Any) -> list[Any]:
    out = [] if isinstance(model.prices, ModelPrice) else [cp.constraint for cp in model.prices]
    out += [v.constraint for v in model.price_variants or ()]
    return [c for c in out if c is not None]


def is_text_model(model: Any) -> bool:
    return any(
        getattr(mp, key, None) is not None for mp in _all_prices(model) for key in TEXT_TOKEN_KEYS
    )


def tier_starts(model: Any) -> list[int]:
    return sorted(
        {
            t.start
            for mp in _all_prices(model)
            for v in mp.__dict__.values()
            if isinstance(v, TieredPrices)
            for t in v.tiers
        }
    )


def _utc_seconds(t: dt.time) -> int:
    if t.tzinfo is not None:
        t = dt.datetime.combine(dt.date(2000, 1, 1), t).astimezone(dt.UTC).time()
    return t.hour * 3600 + t.minute * 60 + t.second


def date_cuts(model: Any) -> list[dt.date]:
    return sorted({c.start_date for c in _constraints(model) if isinstance(c, StartDateConstraint)})


def tod_cuts(model: Any) -> list[int]:
    cuts = set()
    for c in _constraints(model):
        if isinstance(c, TimeOfDateConstraint):
            cuts |= {_utc_seconds(c.start_time), _utc_seconds(c.end_time)}
    return sorted(cuts)


# --------------------------------------------------------------------------- generation


@dataclass
class Case:
    provider: str
    model_id: str
    ref: str
    ts: dt.datetime
    tier: str
    batch: bool
    usage: dict[str, int]
    valid: bool


def _at(day: dt.date, seconds: int) -> dt.datetime:
    """`seconds` after midnight UTC of `day` (negative: before it)."""
    return dt.datetime.combine(day, dt.time(0), dt.UTC) + dt.timedelta(seconds=seconds)


def _random_day(rng: random.Random) -> dt.date:
    lo, hi = RANDOM_DAYS
    return lo + dt.timedelta(days=rng.randrange((hi - lo).days + 1))


def timestamps(model: Any, rng: random.Random) -> list[dt.datetime]:
    """Around every start date (the second before, the first second, during, the day after)
    and around every time-of-day cut (one second before, on, after), plus random instants."""
    out = [_at(_random_day(rng), rng.randrange(86_400)) for _ in range(2)]
    for day in date_cuts(model):
        out += [
            _at(day - dt.timedelta(days=1), 86_399),  # the last second before the change
            _at(day, 0),
            _at(day, rng.randrange(86_400)),
            _at(day + dt.timedelta(days=1), rng.randrange(86_400)),
        ]
    cuts = tod_cuts(model)
    if cuts:
        days = [_random_day(rng), *date_cuts(model)]
        for day, cut in itertools.product(days, cuts):
            out += [_at(day, cut - 1), _at(day, cut), _at(day, cut + 1)]
    return out


def usage_for(rng: random.Random, input_tokens: int | None = None) -> dict[str, int]:
    """Consistent usage: cache read + write within input, 1h writes within writes, reasoning
    within output. Token counts span empty requests to multi-million-token prompts."""
    if input_tokens is None:
        input_tokens = rng.choice(
            [
                0,
                rng.randint(1, 100),
                rng.randint(100, 20_000),
                rng.randint(20_000, 300_000),
                rng.randint(300_000, 2_000_000),
            ]
        )
    cache_read = rng.choice([0, rng.randint(0, input_tokens)])
    cache_write = rng.choice([0, rng.randint(0, input_tokens - cache_read)])
    cache_write_1h = rng.choice([0, cache_write, rng.randint(0, cache_write)])
    output = rng.choice([0, rng.randint(1, 500), rng.randint(500, 64_000)])
    reasoning = rng.choice([0, rng.randint(0, output)])
    return {
        "input_tokens": input_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cache_write_1h_tokens": cache_write_1h,
        "output_tokens": output,
        "reasoning_tokens": reasoning,
    }


def invalid_usage_for(rng: random.Random) -> dict[str, int]:
    usage = usage_for(rng, rng.randint(10, 50_000))
    kind = rng.randrange(4)
    if kind == 0:
        usage["cache_read_tokens"] = usage["input_tokens"] + rng.randint(1, 1000)
    elif kind == 1:
        usage["cache_write_tokens"] = usage["input_tokens"] - usage["cache_read_tokens"] + 1
        usage["cache_write_1h_tokens"] = 0
    elif kind == 2:
        usage["cache_write_1h_tokens"] = usage["cache_write_tokens"] + rng.randint(1, 1000)
    else:
        usage["reasoning_tokens"] = usage["output_tokens"] + rng.randint(1, 1000)
    return usage


@dataclass
class Plan:
    cases: list[Case]
    text_models: int
    non_token_models: list[str]
    skipped: list[str]


def build_plan(seed: int = SEED) -> Plan:
    rng = random.Random(seed)
    cases: list[Case] = []
    non_token: list[str] = []
    skipped: list[str] = []
    text_models = 0
    for provider in GENAI_PROVIDERS:
        for model in provider.models:
            key = f"{provider.id}/{model.id}"
            if not is_text_model(model):
                non_token.append(key)
                continue
            ref, why = resolve_ref(provider, model)
            if ref is None:
                skipped.append(f"{key}: {why}")
                continue
            text_models += 1
            stamps = timestamps(model, rng)
            requests = [(ts, usage_for(rng), True) for ts in stamps]
            for start in tier_starts(model):
                # exactly at the threshold (base rate), one token past it (every token at the
                # tier rate), and well above it
                for prompt in (start, start + 1, start + rng.randint(2, 500_000)):
                    requests.append((rng.choice(stamps), usage_for(rng, prompt), True))
            requests.append((rng.choice(stamps), invalid_usage_for(rng), False))
            for ts, usage, valid in requests:
                # a model with request-context variants is asked in every context
                contexts = CONTEXTS if model.price_variants and valid else [rng.choice(CONTEXTS)]
                cases += [
                    Case(provider.id, model.id, ref, ts, tier, batch, usage, valid)
                    for tier, batch in contexts
                ]
    return Plan(cases, text_models, non_token, skipped)


def genai_price(case: Case) -> PriceCalculation | ValueError:
    u = case.usage
    usage = Usage(
        input_tokens=u["input_tokens"],
        cache_read_tokens=u["cache_read_tokens"],
        cache_write_tokens=u["cache_write_tokens"],
        cache_write_1h_tokens=u["cache_write_1h_tokens"],
        output_tokens=u["output_tokens"],
        output_reasoning_tokens=u["reasoning_tokens"],
    )
    context = {"service_tier": case.tier, **({"processing": "batch"} if case.batch else {})}
    try:
        return calc_price(
            usage,
            model_ref=case.ref,
            provider_id=case.provider,
            genai_request_timestamp=case.ts,
            price_context=context,
        )
    except ValueError as exc:
        return exc


def rateless_usage(case: Case, calc: PriceCalculation) -> bool:
    """True when genai-prices has no rate (own or inherited) for any token bucket the request
    used, so its $0 means "not priced", not "free". `reprice` refuses such rows
    (unpriced_reason 'no_rate_for_usage') instead of billing them at $0, by design."""
    u = case.usage
    price = calc.model_price
    buckets = {
        ("input_mtok",): u["input_tokens"] - u["cache_read_tokens"] - u["cache_write_tokens"],
        ("cache_read_mtok", "input_mtok"): u["cache_read_tokens"],
        ("cache_write_mtok", "input_mtok"): u["cache_write_tokens"],
        ("output_mtok",): u["output_tokens"] - u["reasoning_tokens"],
        ("output_reasoning_mtok", "output_mtok"): u["reasoning_tokens"],
    }
    rated = any(
        count > 0 and any(getattr(price, key, None) is not None for key in keys)
        for keys, count in buckets.items()
    )
    return not rated and getattr(price, "requests_kcount", None) is None and calc.total_price == 0


# --------------------------------------------------------------------------- the proof


def test_reprice_agrees_with_genai_calc_price_for_every_text_model(catalog: Any) -> None:
    t0 = time.perf_counter()
    plan = build_plan()
    cases = plan.cases
    frame = canonical_frame(
        {
            "request_id": str(i),
            "started_at": c.ts,
            "provider": c.provider,
            "model": c.ref,
            "service_tier": c.tier,
            "batch": c.batch,
            **c.usage,
        }
        for i, c in enumerate(cases)
    )
    t1 = time.perf_counter()
    out = reprice(frame.lazy(), catalog).collect()
    t2 = time.perf_counter()

    assert out.height == len(cases)
    assert out["request_id"].to_list() == [str(i) for i in range(len(cases))]

    problems: list[str] = []
    compared = invalid_checked = genai_raised = rateless = 0
    for case, row in zip(cases, out.iter_rows(named=True), strict=True):
        calc = genai_price(case)
        where = (
            f"{case.provider}/{case.model_id} ref={case.ref!r} ts={case.ts.isoformat()} "
            f"tier={case.tier} batch={case.batch} usage={case.usage}"
        )
        reason = row["unpriced_reason"] or ""
        if isinstance(calc, ValueError) or not case.valid:
            invalid_checked += 1
            genai_raised += isinstance(calc, ValueError)
            if not reason.startswith("invalid_usage"):
                problems.append(f"{where}: genai={calc!r}, ours unpriced_reason={reason!r}")
            if case.valid:  # genai rejected usage we generated as consistent
                problems.append(f"{where}: genai raised on consistent usage: {calc}")
            continue
        expected_key = f"{case.provider}/{case.model_id}"
        # 'catalog': a curated file also prices the model (media variants), same model key
        if row["model_key"] != expected_key or row["match_kind"] not in ("genai", "catalog"):
            problems.append(
                f"{where}: matched {row['model_key']} ({row['match_kind']}), "
                f"expected {expected_key}"
            )
            continue
        ours, theirs = row["list_cost_usd"], calc.total_price
        if reason == "no_rate_for_usage" and rateless_usage(case, calc):
            rateless += 1
        elif ours is None:
            problems.append(f"{where}: genai={theirs}, ours unpriced ({reason})")
        elif abs(ours - theirs) > TOLERANCE:
            problems.append(
                f"{where}: genai={theirs}, ours={ours} (diff {ours - theirs}, "
                f"price_id {row['price_id']})"
            )
        else:
            compared += 1
    t3 = time.perf_counter()

    models_in_data = plan.text_models + len(plan.skipped) + len(plan.non_token_models)
    print(
        f"\ngenai-prices models: {models_in_data}; text-token models compared: "
        f"{plan.text_models}; non-token-only models excluded: {len(plan.non_token_models)}; "
        f"skipped: {len(plan.skipped)}"
    )
    print(
        f"rows: {len(cases)} (list_cost_usd == total_price: {compared}; invalid usage: "
        f"{invalid_checked}, of which calc_price raised: {genai_raised}; usage without any rate, "
        f"$0 in genai-prices, no_rate_for_usage here: {rateless})"
    )
    print(f"contexts: {Counter((c.tier, c.batch) for c in cases)}")
    print(f"time: build {t1 - t0:.1f}s, reprice {t2 - t1:.1f}s, compare {t3 - t2:.1f}s")
    for s in plan.skipped:
        print(f"skipped {s}")
    assert not problems, f"{len(problems)} disagreements, first ones:\n" + "\n".join(problems[:25])

    assert plan.text_models >= 1500
    assert compared >= 5000
    assert rateless <= 0.01 * len(cases)
    assert genai_raised > 0  # the ValueError path was exercised
    assert len(plan.skipped) <= 0.02 * (plan.text_models + len(plan.skipped))
    # every comparison row is distinct request data, and every context was exercised
    assert {(c.tier, c.batch) for c in cases} == set(CONTEXTS)
    assert pl.Series([c.ts for c in cases]).n_unique() > 1000
