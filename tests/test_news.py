"""News: RSS and article pages served by a real HTTP server on 127.0.0.1, the cache, the snapshot."""

from __future__ import annotations

import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

import pytest

from benchmark.tasks.sentiment.news import NewsCache, article_id, fetch_rss, load_snapshot
from tests.conftest import loopback_server, send

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
        send(self, 200, ctype, body)

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
                     max_items_per_ticker=2, now=NOW, warn=warnings.append, allow_private=True)
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
                      max_items_per_ticker=2, now=NOW, allow_private=True)
    assert again == arts and not any(h.startswith("/article/") for h in Handler.hits)


def test_old_items_are_skipped(server, tmp_path):
    arts = fetch_rss({"ACME": "Acme"}, server + "/rss/{ticker}", tmp_path, max_age_days=2,
                     max_items_per_ticker=10, now=NOW, fetch_pages=False, allow_private=True)
    assert [a.title for a in arts] == ["Acme headline 0", "Acme headline 1", "Acme headline 2"]
    assert arts[0].text == "Acme Corp posted news number 0."


def test_network_failure_falls_back_to_cache_with_warning(server, tmp_path):
    first = fetch_rss({"ACME": "Acme"}, server + "/rss/{ticker}", tmp_path, max_items_per_ticker=2, now=NOW, allow_private=True)
    warnings = []
    dead = "http://127.0.0.1:9/rss/{ticker}"  # nothing listens on the discard port
    arts = fetch_rss({"ACME": "Acme"}, dead, tmp_path, max_items_per_ticker=2, now=NOW, timeout=2, allow_private=True,
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


# ------------------------------------------------------------------ issue 14: hostile feeds and pages
# Each test serves what a hostile or broken site would from a real HTTP server on 127.0.0.1 (or
# 127.0.0.2); loopback is allowed only where the test says so, through the explicit option.

import contextlib  # noqa: E402
import threading  # noqa: E402
import urllib.parse  # noqa: E402
from http.server import ThreadingHTTPServer  # noqa: E402
from xml.sax.saxutils import escape  # noqa: E402

from benchmark.tasks.sentiment.news import extract_paragraphs  # noqa: E402
from core import netsafe  # noqa: E402


def rss(entries, encoding: str | None = "utf-8") -> str:
    """An RSS 2.0 document; entries are (title, link, description) or dicts with those keys and age_days."""
    items = []
    for e in entries:
        e = e if isinstance(e, dict) else dict(zip(("title", "link", "description"), e))
        age = e.get("age_days", 0.1)
        items.append(f"<item><title>{escape(e['title'])}</title><link>{escape(e['link'])}</link>"
                     f"<description>{escape(e.get('description', ''))}</description>"
                     f"<pubDate>{formatdate(NOW - age * 86400, usegmt=True)}</pubDate></item>")
    decl = f'<?xml version="1.0" encoding="{encoding}"?>' if encoding else '<?xml version="1.0"?>'
    return f"{decl}<rss version=\"2.0\"><channel><title>t</title>{''.join(items)}</channel></rss>"


class Site(BaseHTTPRequestHandler):
    """Routes (unquoted path -> (status, content type, body) or a callable(handler)) set per test."""

    routes: dict = {}
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        path = urllib.parse.unquote(self.path)
        type(self).hits.append(path)
        route = self.routes.get(path)
        if callable(route):
            route(self)
            return
        send(self, *(route or (404, "text/plain", b"not found")))

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def site(routes: dict, host: str = "127.0.0.1"):
    handler = type("S", (Site,), {"routes": routes, "hits": []})
    with loopback_server(handler, host) as url:
        yield url, handler


def fetch(url_template, tmp_path, tickers=None, **kw):
    warnings: list[str] = []
    kw = {"now": NOW, "allow_private": True, "warn": warnings.append, **kw}
    arts = fetch_rss(tickers or {"ACME": "Acme"}, url_template, tmp_path / "cache", **kw)
    return arts, warnings


def test_file_links_are_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("<p>Acme SECRET-TOKEN-123 from the local disk</p>")
    links = [f"file://localhost{secret}", f"file:{secret}", f"file://127.0.0.1{secret}", f"FILE://{secret}"]
    routes = {"/rss/ACME": (200, "application/rss+xml",
                            rss([(f"Acme {i}", link, f"Acme summary {i}.") for i, link in enumerate(links)]))}
    with site(routes) as (base, _):  # loopback allowed: file: links are refused all the same
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path)
    assert [a.text for a in arts] == [f"Acme summary {i}." for i in range(4)]  # the feed's summary only
    assert len(warnings) == 4 and all("only http and https" in w for w in warnings), warnings
    cached = "".join(p.read_text() for p in (tmp_path / "cache").glob("*.json"))
    assert "SECRET-TOKEN" not in cached and "SECRET-TOKEN" not in " ".join(a.text for a in arts)


def test_loopback_is_refused_by_default_and_the_warning_names_the_option(tmp_path):
    routes = {"/rss/ACME": (200, "application/rss+xml", rss([("Acme 0", "http://example.invalid/0", "Acme.")]))}
    with site(routes) as (base, handler):
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path, allow_private=False)
    assert arts == [] and handler.hits == []  # nothing was sent
    assert len(warnings) == 1
    assert "127.0.0.1 is a loopback address" in warnings[0] and "news.allow_private_addresses" in warnings[0]


@pytest.mark.slow
def test_links_to_loopback_are_refused_after_dns_and_on_every_redirect(tmp_path):
    """The feed's host (127.0.0.2) is allowed by name; its links to 127.0.0.1 are not: directly, through
    DNS (localhost) or through a redirect from the allowed host."""
    admin = {"/admin": (200, "text/html", "<p>Acme ADMIN-PAGE secrets</p>")}
    with site(admin, "127.0.0.1") as (admin_base, admin_handler):
        port = admin_base.rsplit(":", 1)[1]
        routes = {"/page": (200, "text/html", "<p>Acme page text.</p>"),
                  "/hop": lambda h: (h.send_response(302), h.send_header("Location", f"{admin_base}/admin"),
                                     h.send_header("Content-Length", "0"), h.end_headers())}
        with site(routes, "127.0.0.2") as (base, handler):
            routes["/rss/ACME"] = (200, "application/rss+xml", rss([
                ("Acme direct", f"{admin_base}/admin", "Acme one."),
                ("Acme dns", f"http://localhost:{port}/admin", "Acme two."),
                ("Acme redirect", f"{base}/hop", "Acme three."),
                ("Acme fine", f"{base}/page", "Acme four.")]))
            arts, warnings = fetch(base + "/rss/{ticker}", tmp_path, allow_private=["127.0.0.2"])
    assert admin_handler.hits == []  # the admin page was never asked for
    assert [a.text for a in arts] == ["Acme one.", "Acme two.", "Acme three.", "Acme four. Acme page text."]
    assert len(warnings) == 3 and all("loopback address" in w and "news.allow_private_addresses" in w
                                      for w in warnings), warnings
    assert "localhost (127.0.0.1)" in warnings[1] or "localhost (::1)" in warnings[1]


@pytest.mark.parametrize("url, kind", [("http://169.254.169.254/latest/meta-data/", "link-local"),
                                       ("http://10.1.2.3/", "private"), ("http://[::1]:9/", "loopback"),
                                       ("http://[::ffff:127.0.0.1]:9/", "loopback"), ("http://0.0.0.0:9/", "unspecified"),
                                       ("http://192.168.0.1/", "private")])
def test_non_public_addresses_are_refused_before_connecting(url, kind):
    with pytest.raises(netsafe.Refused) as err:
        netsafe.fetch(url, netsafe.Policy(deadline_s=5, private_option="news.allow_private_addresses"))
    assert f"is a {kind} address" in err.value.message and "news.allow_private_addresses" in err.value.hint


def _trickle(where: str):
    def handler(h):
        try:
            if where == "body":
                h.send_response(200)
                h.send_header("Content-Type", "application/rss+xml")
                h.send_header("Content-Length", "100000")
                h.end_headers()
            else:
                h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(120):  # one byte a second, until the client hangs up
                h.wfile.write(b"a")
                h.wfile.flush()
                time.sleep(1)
        except OSError:
            pass
    return handler


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_server_sending_one_byte_a_second_is_abandoned_at_the_deadline(tmp_path, where):
    with site({"/rss/ACME": _trickle(where)}) as (base, _):
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path, timeout=2)
    assert arts == [] and len(warnings) == 1
    assert "gave up after 2 s" in warnings[0] and "news.timeout_s" in warnings[0], warnings


def _raw(data: bytes, close_after: bool = True):
    def handler(h):
        h.wfile.write(data)
        h.wfile.flush()
        h.close_connection = True
    return handler


@pytest.mark.parametrize("data, needle", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<rss>", "closed the connection after 5 of 1000 bytes"),
    (b"HELLO THERE\r\n\r\n", "not HTTP"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", "line longer than"),
    (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(120)) + b"\r\n", "too many headers"),
    (b"", "closed the connection without answering"),
])
def test_broken_http_answers_are_one_warning_each_never_a_traceback(tmp_path, data, needle):
    with site({"/rss/ACME": _raw(data)}) as (base, _):
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path)
    assert arts == [] and len(warnings) == 1 and needle in warnings[0], warnings
    assert "news feed for ACME failed" in warnings[0]


def test_links_with_spaces_and_tickers_with_spaces_or_non_ascii_letters_work(tmp_path):
    routes = {"/article/a b": (200, "text/html", "<p>Acme spaced page.</p>"),
              "/article/é": (200, "text/html", "<p>Acme accented page.</p>")}
    with site(routes) as (base, handler):
        routes["/rss/BRK B"] = (200, "application/rss+xml", rss([("Acme 1", f"{base}/article/a b", "Acme one.")]))
        routes["/rss/ÉLÉ"] = (200, "application/rss+xml", rss([("Acme 2", f"{base}/article/é", "Acme two.")]))
        routes["/rss/7203.T"] = (200, "application/rss+xml", rss([("Acme 3", "http://[::1/broken", "Acme three.")]))
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path, tickers={"BRK B": "Acme", "ÉLÉ": "Acme",
                                                                          "7203.T": "Acme"})
    assert [a.ticker for a in arts] == ["BRK B", "ÉLÉ", "7203.T"]
    assert [a.text for a in arts] == ["Acme one. Acme spaced page.", "Acme two. Acme accented page.", "Acme three."]
    assert len(warnings) == 1 and "not a valid URL" in warnings[0], warnings


def test_an_html_page_instead_of_a_feed_says_so(tmp_path):
    page = "<!DOCTYPE html><html><head><title>Login</title></head><body><p>Please sign in</p></body></html>"
    with site({"/rss/ACME": (200, "text/html; charset=utf-8", page)}) as (base, _):
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path)
    assert arts == [] and len(warnings) == 1
    assert "an HTML page, not an RSS or Atom feed" in warnings[0] and "news.rss_url" in warnings[0]


def test_feed_summaries_lose_their_html_tags(tmp_path):
    summary = '<p>Acme <b>beat</b> forecasts.<br/>Shares rose&nbsp;4%.</p><script>alert(1)</script><img src="x.png">'
    routes = {"/rss/ACME": (200, "application/rss+xml", rss([("Acme <i>up</i>", "http://x.invalid/1", summary)]))}
    with site(routes) as (base, _):
        arts, _w = fetch(base + "/rss/{ticker}", tmp_path, fetch_pages=False)
    assert arts[0].text == "Acme beat forecasts. Shares rose 4%."  # entities decoded, spaces collapsed
    assert arts[0].title == "Acme up"


def test_charset_from_the_http_header_is_honoured(tmp_path):
    page = "<html><body><p>Acme's na\u00efve caf\u00e9 plan \u2014 \u20ac5m.</p></body></html>".encode("cp1252")
    feed = rss([("Acme caf\u00e9", "PAGE", "Acme na\u00efve summary.")], encoding=None)
    routes = {"/page": (200, "text/html; charset=windows-1252", page)}
    with site(routes) as (base, _):
        routes["/rss/ACME"] = (200, "application/rss+xml; charset=windows-1252",
                               feed.replace("PAGE", f"{base}/page").encode("cp1252"))
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path)
    assert not warnings
    assert arts[0].title == "Acme caf\u00e9"
    assert arts[0].text == "Acme na\u00efve summary. Acme's na\u00efve caf\u00e9 plan \u2014 \u20ac5m."


def test_duplicate_entries_do_not_count_against_max_items_per_ticker(tmp_path):
    entries = [("Acme 0", "http://x.invalid/0", "Acme zero.")] * 3 + [
        ("Acme 1", "http://x.invalid/1", "Acme one."), ("Acme 0 again", "http://x.invalid/0", "Acme zero."),
        ("Acme 2", "http://x.invalid/2", "Acme two.")]
    routes = {"/rss/ACME": (200, "application/rss+xml", rss(entries)),
              "/rss/ACM2": (200, "application/rss+xml", rss(entries))}
    with site(routes) as (base, _):
        arts, _w = fetch(base + "/rss/{ticker}", tmp_path, tickers={"ACME": "Acme", "ACM2": "Acme"},
                         max_items_per_ticker=3, fetch_pages=False)
    assert [a.text for a in arts] == ["Acme zero.", "Acme one.", "Acme two."]  # ACM2's are all seen already


def test_a_long_article_is_capped_and_the_cut_recorded_on_the_item(tmp_path):
    description = "Acme " + "results were strong again this quarter. " * 25_000  # 1 MB
    routes = {"/rss/ACME": (200, "application/rss+xml", rss([("Acme long", "http://x.invalid/long", description)]))}
    with site(routes) as (base, _):
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path, fetch_pages=False, max_chars=2000)
    (art,) = arts
    full = " ".join(description.split())
    assert 1800 <= len(art.text) <= 2000 and full.startswith(art.text) and full[len(art.text)] == " "  # a word boundary
    assert art.truncated_from == len(full)
    assert art.to_item().fields["truncated_from"] == art.truncated_from
    assert NewsCache(tmp_path / "cache").get(art.id).text == art.text  # the cache holds the capped text


def test_a_feed_over_the_byte_cap_is_skipped_with_a_warning_naming_the_option(tmp_path):
    description = "Acme " + "x" * 3_000_000
    routes = {"/rss/ACME": (200, "application/rss+xml", rss([("Acme huge", "http://x.invalid/h", description)]))}
    with site(routes) as (base, _):
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path, max_bytes=1_000_000)
    assert arts == [] and len(warnings) == 1
    assert "more than the cap of 1,000,000" in warnings[0] and "news.max_fetch_bytes" in warnings[0]


def test_a_10_mb_page_of_135k_paragraphs_is_read_up_to_the_article_cap(tmp_path):
    page = ("<html><body>" + "".join(f"<p>Acme paragraph {i} lorem ipsum dolor sit amet, consectetur adip</p>\n"
                                     for i in range(135_000)) + "</body></html>").encode()
    assert len(page) > 9_500_000
    routes = {"/big": (200, "text/html", page)}
    with site(routes) as (base, _):
        routes["/rss/ACME"] = (200, "application/rss+xml", rss([("Acme big", f"{base}/big", "Acme summary.")]))
        arts, warnings = fetch(base + "/rss/{ticker}", tmp_path, max_bytes=20_000_000, max_chars=10_000)
    (art,) = arts
    assert not warnings
    assert art.text.startswith("Acme summary. Acme paragraph 0 lorem") and len(art.text) <= 10_000
    assert art.truncated_from is not None and art.truncated_from > 10_000


def test_paragraph_extraction_keeps_each_paragraph_once_in_page_order():
    page = "".join(f"<p>Acme {i % 1000}</p>" for i in range(5000)) + "<h2>ACME headline</h2><p>weather</p>"
    out = extract_paragraphs(page, "Acme", "ACME")
    assert out == [f"Acme {i}" for i in range(1000)] + ["ACME headline"]


def test_paragraph_text_across_inline_tags_entities_and_chunk_boundaries():
    filler = "<p>Acme " + "word " * 20_000 + "</p>"  # longer than one 64 KB chunk of the parser
    page = (f"<p>Shares of <b>Ac</b>me rose &amp; fell<script>var acme=1</script></p>{filler}"
            "<noscript><p>Acme hidden</p></noscript><p>Acme <div>block</div> tail</p>")
    out = extract_paragraphs(page.encode(), "Acme", "ACME")
    assert out[0] == "Shares of Acme rose & fell"
    assert out[1].startswith("Acme word word") and out[1].count("word") == 20_000
    assert out[2:] == ["Acme"]  # <noscript> is skipped; a <div> closes the <p> (tail is outside it)


def test_cache_dir_that_is_a_file_is_one_clear_error(tmp_path):
    from core.errors import ShootoutError

    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(ShootoutError) as err:
        fetch("http://127.0.0.1:9/{ticker}", tmp_path)
    assert "news.cache_dir" in err.value.message and "is a file, not a folder" in err.value.message


@pytest.fixture()
def tls_site(tmp_path):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for that address."""
    import shutil
    import ssl
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    handler = type("S", (Site,), {"routes": {"/page": (200, "text/html", "<p>Acme over TLS.</p>")}, "hits": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{srv.server_address[1]}", cert
    finally:
        srv.shutdown()
        srv.server_close()


def test_https_is_verified_and_fetched(tls_site, monkeypatch):
    url, cert = tls_site
    policy = netsafe.Policy(allow_private=True, deadline_s=10)
    with pytest.raises(netsafe.FetchError) as err:  # a certificate nobody vouches for
        netsafe.fetch(url + "/page", policy)
    assert "TLS failed" in err.value.reason and "CERTIFICATE_VERIFY_FAILED" in err.value.reason
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted: the same page is read
    page = netsafe.fetch(url + "/page", policy).raise_for_status()
    assert extract_paragraphs(page.body, "Acme", "ACME", charset=page.charset) == ["Acme over TLS."]


@pytest.mark.parametrize("location, needle", [("file:///etc/passwd", "'file:' links are never fetched"),
                                              ("/loop", "more than 5 redirects"),
                                              ("ftp://127.0.0.1/x", "'ftp:' links are never fetched")])
def test_redirects_are_checked_and_bounded(location, needle):
    def hop(h):
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    with site({"/loop": hop}) as (base, handler):
        with pytest.raises(netsafe.FetchError) as err:
            netsafe.fetch(base + "/loop", netsafe.Policy(allow_private=True, deadline_s=10))
    assert needle in err.value.message
    assert len(handler.hits) == (6 if location == "/loop" else 1)
