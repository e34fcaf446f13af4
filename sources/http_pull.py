"""Provider report pages: pull them over HTTP, and read a pulled file back.

The OpenAI Usage/Costs APIs and the Anthropic usage/cost reports share one paged shape:

    {"object": "page", "data": [bucket, ...], "has_more": bool, "next_page": str | null}
    bucket: {"start_time": unix, "end_time": unix, "results": [result, ...]}     (OpenAI)
            {"starting_at": RFC 3339, "ending_at": RFC 3339, "results": [...]}   (Anthropic)

`pull_pages` follows the cursor (`has_more` + `next_page`, sent back as `page=`), retries what
is worth retrying and writes every page, verbatim, as one JSON list, all or nothing.
`read_pages` turns such a file (one page, a JSON list of pages, or JSONL with a page per
line) into one record per result for the adapters.

The API key is read from a named environment variable at call time. It is sent only in the
request header, only to `base_url`: redirects are refused rather than followed (urllib would
forward the header to any host), `next_page` is only ever a query parameter, and the key is
masked in every error message and never logged or written.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.client import HTTPException
from pathlib import Path
from typing import Any, Literal

import polars as pl

from transforms.canonical_reader import InputError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, *range(500, 600)})
MASK = "***"


class PullError(RuntimeError):
    """A pull that did not complete; one line, naming the URL and page, the key masked."""


@dataclass(frozen=True)
class PullResult:
    out_path: Path
    pages: int  # pages written
    attempts: int  # HTTP requests made, over all pages
    retries: int  # attempts that were repeats of a failed one (attempts - pages)
    waits: list[float] = field(default_factory=list)  # seconds slept before each retry


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # urllib then raises HTTPError with the 3xx status


class _Retryable(Exception):
    """One attempt failed in a way worth another try."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Fatal(Exception):
    """One attempt failed in a way another try will not fix."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _opener(base_url: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if _is_loopback(urllib.parse.urlsplit(base_url).hostname):
        handlers.append(urllib.request.ProxyHandler({}))  # loopback never goes via a proxy
    return urllib.request.build_opener(*handlers)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date; None if unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _decode_page(body: bytes) -> str:
    """The page body as text, checked to be a JSON page object.

    A body that is not JSON (cut off in transit, an HTML error page from a proxy) is worth
    another try; JSON that is not a page is an answer, and trying again will not change it."""
    try:
        text = body.decode(json.detect_encoding(body)).lstrip("\ufeff")
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _Retryable(f"invalid JSON body ({len(body)} bytes): {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise _Fatal("the response is JSON but not a page (no 'data' list)")
    return text


def pull_pages(
    base_url: str,
    path: str,
    params: Mapping[str, Any],
    *,
    api_key_env: str,
    out_path: Path,
    max_attempts: int = 5,
    timeout_s: float = 30,
    sleep: Callable[[float], None] = time.sleep,
    auth: Literal["bearer", "x-api-key"] = "bearer",
    headers: Mapping[str, str] | None = None,
    backoff_s: float = 1.0,
    max_wait_s: float = 300.0,
) -> PullResult:
    """GET `base_url`/`path`?`params` page after page and write them all to `out_path`.

    Every page must succeed for anything to be written: the JSON list of pages goes to a
    temporary file next to `out_path` and is moved into place with os.replace; on failure
    nothing is written and an existing `out_path` is left as it was.

    Retried, at most `max_attempts` tries per page: HTTP 429 and 5xx (waiting `Retry-After`,
    seconds or HTTP date, when the server sends it), connection errors and timeouts, and a
    200 whose body is not valid JSON (truncated). Without `Retry-After` the waits are
    `backoff_s` * 2**n. Every wait is capped at `max_wait_s`. Anything else (401, 404, a 3xx,
    a JSON body that is not a page, a cursor that repeats) fails at once.

    auth: "bearer" sends `Authorization: Bearer <key>` (OpenAI); "x-api-key" sends
    `x-api-key: <key>` (Anthropic, which also wants `anthropic-version` in `headers`).
    base_url: https, or plain http to a loopback address only (tests, local proxies).
    params: list values are sent as repeated parameters (`group_by[]=a&group_by[]=b`).
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    parts = urllib.parse.urlsplit(base_url)
    if not (parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname))):
        # No file:// or ftp:// through urllib, and no key in clear text over the network.
        raise ValueError(f"base_url must be https:// (or http:// to loopback): {base_url!r}")
    key = os.environ.get(api_key_env, "")
    if not key.strip():
        raise PullError(f"environment variable {api_key_env} is not set (the API key)")
    key = key.strip()

    def mask(text: str) -> str:
        return text.replace(key, MASK)

    endpoint = base_url.rstrip("/") + "/" + path.lstrip("/")
    request_headers = {"Accept": "application/json", "User-Agent": "aispend-pull/1"}
    request_headers.update(headers or {})
    if auth == "bearer":
        request_headers["Authorization"] = f"Bearer {key}"
    else:
        request_headers["x-api-key"] = key
    opener = _opener(base_url)

    pages: list[str] = []
    attempts = 0
    waits: list[float] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    while True:
        page_number = len(pages) + 1
        query = dict(params)
        if cursor is not None:
            query["page"] = cursor
        url = endpoint + "?" + urllib.parse.urlencode(query, doseq=True)
        where = f"GET {mask(url)} (page {page_number})"
        for attempt in range(1, max_attempts + 1):
            attempts += 1
            try:
                text = _fetch(opener, url, request_headers, timeout_s)
                break
            except _Retryable as exc:
                if attempt == max_attempts:
                    raise PullError(
                        mask(f"{where}: {exc.reason}; gave up after {attempt} attempts")
                    ) from None
                wait = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else backoff_s * 2 ** (attempt - 1)
                )
                wait = min(wait, max_wait_s)
                log.warning(mask(f"{where}: {exc.reason}; retrying in {wait:g}s"))
                waits.append(wait)
                sleep(wait)
            except _Fatal as exc:
                raise PullError(mask(f"{where}: {exc}")) from None
        if key in text:
            raise PullError(f"{where}: the response contains the API key; refusing to write it")
        doc = json.loads(text)
        pages.append(text)
        if not doc.get("has_more"):
            break
        next_page = doc.get("next_page")
        if not isinstance(next_page, str) or not next_page:
            raise PullError(mask(f"{where}: has_more is true but next_page is missing"))
        if next_page in seen_cursors:
            raise PullError(mask(f"{where}: next_page {next_page!r} repeats an earlier cursor"))
        seen_cursors.add(next_page)
        cursor = next_page

    _write_atomically(out_path, "[\n" + ",\n".join(p.strip() for p in pages) + "\n]\n")
    log.info("pulled %d page(s) from %s into %s", len(pages), mask(endpoint), out_path)
    return PullResult(
        out_path=out_path,
        pages=len(pages),
        attempts=attempts,
        retries=attempts - len(pages),
        waits=waits,
    )


def _fetch(
    opener: urllib.request.OpenerDirector, url: str, headers: dict[str, str], timeout_s: float
) -> str:
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        status = exc.code
        detail = _snippet(exc)
        exc.close()
        if status in RETRY_STATUSES:
            raise _Retryable(
                f"HTTP {status}{detail}", retry_after_seconds(exc.headers.get("Retry-After"))
            ) from None
        if 300 <= status < 400:
            raise _Fatal(
                f"HTTP {status}: redirect refused (the key goes to base_url only)"
            ) from None
        raise _Fatal(f"HTTP {status}{detail}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _Retryable(f"connection failed: {type(exc).__name__}: {reason}") from None
    except OSError as exc:
        raise _Retryable(f"connection failed: {exc.strerror or exc}") from None
    return _decode_page(body)


def _snippet(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(300).decode("utf-8", errors="replace")
    except (OSError, HTTPException):
        return ""
    body = " ".join(body.split())
    return f": {body[:200]}" if body else ""


def _write_atomically(out_path: Path, text: str) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- reading back
class _Num(str):
    """A JSON number kept as its source text (amounts stay exact, records stay verbatim)."""


def _plain(number: _Num) -> str:
    text = str.__str__(number)
    if "e" in text or "E" in text:
        try:
            return format(Decimal(text), "f")
        except InvalidOperation:
            return text
    return text


def _dump(value: Any) -> str:
    """Compact JSON with numbers written exactly as they were read."""
    if isinstance(value, _Num):
        return str.__str__(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _leaf(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, _Num):
        return _plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return _dump(value)  # a list


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, str | None]) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, f"{name}.", out)
        else:
            out[name] = _leaf(value)


def _loads(text: str | bytes) -> Any:
    return json.loads(text, parse_int=_Num, parse_float=_Num, parse_constant=_Num)


def _pages_of(path: Path, raw: bytes) -> list[tuple[Any, str | None]]:
    """(page, parse error) per page in the file; the error text stands in for the page."""
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        return []
    try:
        doc = _loads(text)
    except (json.JSONDecodeError, RecursionError) as whole:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            first = _loads(lines[0])
        except (json.JSONDecodeError, RecursionError):
            first = None
        if len(lines) < 2 or not isinstance(first, dict):
            detail = whole if isinstance(whole, json.JSONDecodeError) else "nested too deeply"
            raise InputError(f"{path}: not a JSON report: {detail}") from None
        pages: list[tuple[Any, str | None]] = []
        for line in lines:  # JSONL: one page per line
            try:
                pages.append((_loads(line), None))
            except (json.JSONDecodeError, RecursionError):
                pages.append((line.strip(), "invalid_json"))
        return pages
    if isinstance(doc, dict):
        return [(doc, None)]
    if isinstance(doc, list):
        return [(item, None) for item in doc]
    raise InputError(f"{path}: expected a report page or a JSON list of pages")


def read_pages(path: Path) -> pl.DataFrame:
    """One record per result row of every bucket of every page, in file order.

    Columns: `_line` (the record's number in the file, 1-based), `_record` (compact JSON
    `{"bucket": <bucket fields but results>, "result": <the result>}`, numbers as written),
    `_parse_error`, then the result's fields flattened to dotted names
    (`cache_creation.ephemeral_5m_input_tokens`) and the bucket's as `_bucket.<name>`
    (`_bucket.start_time`). Every value is text (numbers exactly as written, exponents
    expanded; booleans `true`/`false`), so nothing is rounded through floats.

    Empty buckets give no records. A page, bucket or result that is not what it should be
    is kept as one record with `_parse_error` (`not_a_page`, `not_a_bucket`,
    `not_a_json_object`, `invalid_json`) so it is quarantined, never silently dropped. A
    list item holding `results` directly is read as a bucket (a saved `data` array).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    records: list[str] = []
    errors: list[str | None] = []
    fields: list[dict[str, str | None]] = []

    def broken(item: Any, error: str, known: dict[str, str | None] | None = None) -> None:
        records.append(item if isinstance(item, str) and error == "invalid_json" else _dump(item))
        errors.append(error)
        fields.append(known or {})  # the bucket's fields, so the row still has its day

    def bucket_rows(bucket: Any) -> None:
        if not isinstance(bucket, dict) or not isinstance(bucket.get("results"), list):
            broken(bucket, "not_a_bucket")
            return
        head = {k: v for k, v in bucket.items() if k != "results"}
        bucket_fields: dict[str, str | None] = {}
        _flatten(head, "_bucket.", bucket_fields)
        for result in bucket["results"]:
            if not isinstance(result, dict):
                broken({"bucket": head, "result": result}, "not_a_json_object", bucket_fields)
                continue
            flat = dict(bucket_fields)
            _flatten(result, "", flat)
            records.append(_dump({"bucket": head, "result": result}))
            errors.append(None)
            fields.append(flat)

    for page, error in _pages_of(path, raw):
        if error is not None:
            broken(page, error)
        elif isinstance(page, dict) and isinstance(page.get("data"), list):
            for bucket in page["data"]:
                bucket_rows(bucket)
        elif isinstance(page, dict) and isinstance(page.get("results"), list):
            bucket_rows(page)
        else:
            broken(page, "not_a_page")

    meta = pl.DataFrame(
        {"_line": range(1, len(records) + 1), "_record": records, "_parse_error": errors},
        schema={"_line": pl.Int64, "_record": pl.String, "_parse_error": pl.String},
    )
    reserved = set(meta.columns)  # a result field named like one cannot shadow it
    names = [n for n in dict.fromkeys(n for row in fields for n in row) if n not in reserved]
    if not names:
        return meta
    values = pl.DataFrame(
        {name: [row.get(name) for row in fields] for name in names},
        schema={name: pl.String for name in names},
    )
    return pl.concat([meta, values], how="horizontal")
