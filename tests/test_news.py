"""News: RSS and article pages served by a real HTTP server on 127.0.0.1, the cache, the snapshot."""

from __future__ import annotations

import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

import pytest

from benchmark.tasks.sentiment.news import NewsCache, article_id, fetch_rss, load_snapshot
from tests.conftest import loopback_server

NOW = time.time()


def _rss(base: str) -> str:
    items = []
    for i, age_days in enumerate([0.1, 0.5, 1.0, 10.0]):
        items.append(f"""<item><title>Acme headline {i}</title><link>{base}/article/{i}</link>
<description>Acme Corp posted news number {i}.</description>
<pubDate>{formatdate(NOW - age_days * 86400, usegmt=True)}</pubDate></item>""")
    return f"""<?xml version="1.0"?><rss version="2.0"><channel><title>ACME</title>{''.join(items)}</channel></rss>"""


PAGE = """<html><head><script>var acme = 1;</script></head><body>
<p>Cookie banner text.</p>
<h2>Acme beats forecasts</h2>
<p>Shares of ACME rose 4% after the results.</p>
<p>Unrelated paragraph about the weather.</p>
</body></html>"""


class Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        Handler.hits.append(self.path)
        if self.path.startswith("/rss/ACME"):
            body, ctype = _rss(f"http://{self.headers['Host']}").encode(), "application/rss+xml"
        elif self.path.startswith("/article/"):
            body, ctype = PAGE.encode(), "text/html"
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    Handler.hits = []
    with loopback_server(Handler) as url:
        yield url


def test_rss_headlines_with_article_paragraphs_through_the_cache(server, tmp_path):
    warnings = []
    arts = fetch_rss({"ACME": "Acme"}, server + "/rss/{ticker}", tmp_path, max_age_days=3,
                     max_items_per_ticker=2, now=NOW, warn=warnings.append)
    assert [a.title for a in arts] == ["Acme headline 0", "Acme headline 1"]  # max items
    a = arts[0]
    assert a.id == article_id(f"{server}/article/0") and a.ticker == "ACME"
    assert a.text == ("Acme Corp posted news number 0. Acme beats forecasts "
                      "Shares of ACME rose 4% after the results.")  # only paragraphs naming Acme / ACME
    assert not warnings
    assert NewsCache(tmp_path).get(a.id) == a
    # a second fetch reuses the cached text: no page is fetched again
    Handler.hits.clear()
    again = fetch_rss({"ACME": "Acme"}, server + "/rss/{ticker}", tmp_path, max_age_days=3,
                      max_items_per_ticker=2, now=NOW)
    assert again == arts and not any(h.startswith("/article/") for h in Handler.hits)


def test_old_items_are_skipped(server, tmp_path):
    arts = fetch_rss({"ACME": "Acme"}, server + "/rss/{ticker}", tmp_path, max_age_days=2,
                     max_items_per_ticker=10, now=NOW, fetch_pages=False)
    assert [a.title for a in arts] == ["Acme headline 0", "Acme headline 1", "Acme headline 2"]
    assert arts[0].text == "Acme Corp posted news number 0."


def test_network_failure_falls_back_to_cache_with_warning(server, tmp_path):
    first = fetch_rss({"ACME": "Acme"}, server + "/rss/{ticker}", tmp_path, max_items_per_ticker=2, now=NOW)
    warnings = []
    dead = "http://127.0.0.1:9/rss/{ticker}"  # nothing listens on the discard port
    arts = fetch_rss({"ACME": "Acme"}, dead, tmp_path, max_items_per_ticker=2, now=NOW, timeout=2,
                     warn=warnings.append)
    assert sorted(a.id for a in arts) == sorted(a.id for a in first)
    assert len(warnings) == 1 and "ACME" in warnings[0] and "cached" in warnings[0]


def test_snapshot_has_labelled_items_with_stable_unique_ids():
    arts = load_snapshot()
    assert 20 <= len(arts) <= 30
    assert len({a.id for a in arts}) == len(arts)
    assert all(a.expected_sentiment is not None and -1 <= a.expected_sentiment <= 1 for a in arts)
    assert all(a.company in a.text or a.ticker in a.text for a in arts)
    assert [a.id for a in load_snapshot()] == [a.id for a in arts]
    assert len(load_snapshot(max_articles=5)) == 5
