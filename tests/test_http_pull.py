"""pull_pages against a real HTTP server on 127.0.0.1 serving recorded pages and faults."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sources.http_pull import PullError, pull_pages, retry_after_seconds
from sources.ingest import ingest_file

KEY_ENV = "AISPEND_TEST_ADMIN_KEY"
KEY = "sk-admin-TEST-0123456789abcdef"
DAY = 86400
OCT_5 = 1759622400


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None  # declare more than is sent to cut the body short


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased


class Script:
    """Replies per `page` cursor (None = first request), served in order; the last repeats."""

    def __init__(self) -> None:
        self.replies: dict[str | None, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def on(self, cursor: str | None, *replies: Reply) -> None:
        self.replies[cursor] = list(replies)

    def next(self, cursor: str | None) -> Reply:
        with self.lock:
            queue = self.replies.get(cursor)
            if not queue:
                return Reply(404, b'{"error":"no such page"}')
            return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            with script.lock:
                headers = {k.lower(): v for k, v in self.headers.items()}
                script.seen.append(Seen(url.path, query, headers))
            reply = script.next(query.get("page", [None])[0])
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            length = len(reply.body) if reply.content_length is None else reply.content_length
            self.send_header("Content-Length", str(length))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def usage_page(day: int, rows: list[tuple[str, int, int, int]], next_page: str | None) -> bytes:
    results = [
        {
            "object": "organization.usage.completions.result",
            "model": model,
            "input_tokens": tokens_in,
            "input_cached_tokens": tokens_in // 10,
            "output_tokens": tokens_out,
            "num_model_requests": requests,
            "project_id": "proj_1",
        }
        for model, tokens_in, tokens_out, requests in rows
    ]
    page = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": OCT_5 + day * DAY,
                "end_time": OCT_5 + (day + 1) * DAY,
                "results": results,
            },
            {  # a day without usage: an empty bucket
                "object": "bucket",
                "start_time": OCT_5 + (day + 1) * DAY,
                "end_time": OCT_5 + (day + 2) * DAY,
                "results": [],
            },
        ],
        "has_more": next_page is not None,
        "next_page": next_page,
    }
    return json.dumps(page, indent=1).encode()


PAGE_1 = usage_page(0, [("gpt-4o-2024-08-06", 1000, 100, 3), ("gpt-4o-mini", 500, 50, 2)], "cur-2")
PAGE_2 = usage_page(2, [("gpt-4o-2024-08-06", 2000, 200, 4)], "cur-3")
PAGE_3 = usage_page(4, [("o3-2025-04-16", 4000, 400, 5), ("gpt-4o-mini", 10, 1, 1)], None)
PARAMS = {"start_time": OCT_5, "bucket_width": "1d", "group_by": ["model", "project_id"]}


def pull(base_url: str, out: Path, **kwargs: Any) -> Any:
    return pull_pages(
        base_url,
        "/v1/organization/usage/completions",
        PARAMS,
        api_key_env=KEY_ENV,
        out_path=out,
        **kwargs,
    )


def test_three_pages_through_429_503_and_a_truncated_body(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base_url, script = server
    script.on(None, Reply(429, b'{"error":"slow down"}', {"Retry-After": "1"}), Reply(body=PAGE_1))
    script.on("cur-2", Reply(503, b"upstream unavailable"), Reply(body=PAGE_2))
    script.on("cur-3", Reply(body=PAGE_3[: len(PAGE_3) // 2]), Reply(body=PAGE_3))
    sleeps = Sleeps()
    out = tmp_path / "openai" / "usage-completions-2025-10.json"

    result = pull(base_url, out, sleep=sleeps, backoff_s=0.25)

    assert (result.pages, result.attempts, result.retries) == (3, 6, 3)
    # Retry-After honoured for the 429; exponential backoff from backoff_s otherwise.
    assert sleeps.waits == result.waits == [1.0, 0.25, 0.25]
    assert result.out_path == out

    assert len(script.seen) == 6
    assert all(s.path == "/v1/organization/usage/completions" for s in script.seen)
    assert all(s.headers.get("authorization") == f"Bearer {KEY}" for s in script.seen)
    assert [s.query.get("page") for s in script.seen] == [
        None,
        None,
        ["cur-2"],
        ["cur-2"],
        ["cur-3"],
        ["cur-3"],
    ]
    assert script.seen[0].query["group_by"] == ["model", "project_id"]
    assert script.seen[0].query["start_time"] == [str(OCT_5)]

    text = out.read_text()
    assert KEY not in text
    pages = json.loads(text)
    assert [p["next_page"] for p in pages] == ["cur-2", "cur-3", None]
    assert pages == [json.loads(p) for p in (PAGE_1, PAGE_2, PAGE_3)]
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left

    ingested = ingest_file("openai_usage", out)
    assert ingested.problems() == []
    usage = ingested.frames["provider_usage"]
    assert ingested.records_read == usage.height == 5
    assert ingested.frames["quarantine"].height == 0
    totals = usage.select("input_tokens", "cache_read_tokens", "output_tokens", "requests").sum()
    assert totals.row(0) == (7510, 100 + 50 + 200 + 400 + 1, 751, 15)
    assert usage["source_line"].to_list() == [1, 2, 3, 4, 5]
    assert sorted(str(d) for d in usage["date"].unique()) == [
        "2025-10-05",
        "2025-10-07",
        "2025-10-09",
    ]


def test_a_persistently_truncated_page_fails_cleanly_without_output(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base_url, script = server
    script.on(None, Reply(body=PAGE_1))
    script.on("cur-2", Reply(body=PAGE_2[:-20]))
    sleeps = Sleeps()
    out = tmp_path / "usage.json"

    with pytest.raises(PullError) as caught:
        pull(base_url, out, sleep=sleeps, max_attempts=4)

    message = str(caught.value)
    assert "\n" not in message
    assert f"{base_url}/v1/organization/usage/completions?" in message
    assert "page=cur-2" in message and "(page 2)" in message
    assert "invalid JSON body" in message and "gave up after 4 attempts" in message
    assert KEY not in message and KEY not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert sleeps.waits == [1.0, 2.0, 4.0]
    assert len(script.seen) == 1 + 4
    assert list(tmp_path.iterdir()) == []  # no output, no temp file


def test_a_failed_pull_leaves_an_earlier_file_untouched(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base_url, script = server
    script.on(None, Reply(body=PAGE_1))
    script.on("cur-2", Reply(500, b"oops"))
    out = tmp_path / "usage.json"
    out.write_text("earlier pull")

    with pytest.raises(PullError, match=r"HTTP 500: oops; gave up after 2 attempts"):
        pull(base_url, out, sleep=Sleeps(), max_attempts=2)
    assert out.read_text() == "earlier pull"
    assert [p.name for p in tmp_path.iterdir()] == ["usage.json"]


def test_an_error_echoing_the_key_is_masked_and_not_retried(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base_url, script = server
    script.on(None, Reply(401, f'{{"error":"invalid key {KEY}"}}'.encode()))
    sleeps = Sleeps()

    with pytest.raises(PullError) as caught:
        pull(base_url, tmp_path / "usage.json", sleep=sleeps)

    assert "HTTP 401" in str(caught.value) and "invalid key ***" in str(caught.value)
    assert KEY not in str(caught.value)
    assert sleeps.waits == [] and len(script.seen) == 1
    assert not (tmp_path / "usage.json").exists()


def test_a_body_cut_short_in_transit_is_retried(server: tuple[str, Script], tmp_path: Path) -> None:
    base_url, script = server
    last = usage_page(0, [("gpt-4o", 1, 1, 1)], None)
    script.on(None, Reply(body=last[:30], content_length=len(last)), Reply(body=last))
    result = pull(base_url, tmp_path / "usage.json", sleep=Sleeps())
    assert (result.pages, result.attempts, result.retries) == (1, 2, 1)


def test_retry_after_as_an_http_date(server: tuple[str, Script], tmp_path: Path) -> None:
    base_url, script = server
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    script.on(None, Reply(503, headers={"Retry-After": later}), Reply(body=PAGE_3))
    sleeps = Sleeps()
    pull(base_url, tmp_path / "usage.json", sleep=sleeps)
    assert len(sleeps.waits) == 1 and 25 <= sleeps.waits[0] <= 31


def test_retry_after_values() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds("1") == 1.0
    assert retry_after_seconds(" 2.5 ") == 2.5
    date = email.utils.formatdate(now + 120, usegmt=True)
    assert retry_after_seconds(date, now=now) == 120.0
    assert retry_after_seconds(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_waits_are_capped(server: tuple[str, Script], tmp_path: Path) -> None:
    base_url, script = server
    script.on(None, Reply(429, headers={"Retry-After": "86400"}), Reply(body=PAGE_3))
    sleeps = Sleeps()
    pull(base_url, tmp_path / "usage.json", sleep=sleeps, max_wait_s=60)
    assert sleeps.waits == [60]


def test_redirects_are_refused_so_the_key_goes_nowhere_else(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base_url, script = server
    script.on(None, Reply(302, headers={"Location": f"{base_url}/elsewhere?page=x"}))
    with pytest.raises(PullError, match="HTTP 302: redirect refused"):
        pull(base_url, tmp_path / "usage.json", sleep=Sleeps())
    assert [s.path for s in script.seen] == ["/v1/organization/usage/completions"]


def test_a_repeating_cursor_stops_the_pull(server: tuple[str, Script], tmp_path: Path) -> None:
    base_url, script = server
    script.on(None, Reply(body=PAGE_1))
    script.on("cur-2", Reply(body=usage_page(2, [], "cur-2")))
    with pytest.raises(PullError, match="repeats an earlier cursor"):
        pull(base_url, tmp_path / "usage.json", sleep=Sleeps())
    assert not (tmp_path / "usage.json").exists()


def test_json_that_is_not_a_page_fails_at_once(server: tuple[str, Script], tmp_path: Path) -> None:
    base_url, script = server
    script.on(None, Reply(body=b'{"error": {"message": "bad group_by"}}'))
    sleeps = Sleeps()
    with pytest.raises(PullError, match=r"\(page 1\): the response is JSON but not a page"):
        pull(base_url, tmp_path / "usage.json", sleep=sleeps)
    assert sleeps.waits == []


def test_anthropic_style_key_header(server: tuple[str, Script], tmp_path: Path) -> None:
    base_url, script = server
    script.on(None, Reply(body=b'{"data": [], "has_more": false, "next_page": null}'))
    result = pull_pages(
        base_url + "/",
        "v1/organizations/cost_report",
        {"starting_at": "2025-06-01T00:00:00Z", "group_by[]": ["workspace_id", "description"]},
        api_key_env=KEY_ENV,
        out_path=tmp_path / "cost.json",
        auth="x-api-key",
        headers={"anthropic-version": "2023-06-01"},
    )
    (seen,) = script.seen
    assert seen.path == "/v1/organizations/cost_report"
    assert seen.headers.get("x-api-key") == KEY and "authorization" not in seen.headers
    assert seen.headers.get("anthropic-version") == "2023-06-01"
    assert seen.query["group_by[]"] == ["workspace_id", "description"]
    assert result.pages == 1
    assert json.loads((tmp_path / "cost.json").read_text()) == [
        {"data": [], "has_more": False, "next_page": None}
    ]


def test_a_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(PullError, match=f"environment variable {KEY_ENV} is not set"):
        pull("http://127.0.0.1:9", tmp_path / "usage.json")


@pytest.mark.parametrize("base_url", ["http://api.openai.com", "file:///etc", "ftp://x"])
def test_only_https_or_loopback_http(base_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base_url must be https"):
        pull(base_url, tmp_path / "usage.json")
