"""Financial news: RSS headlines, article text, an on-disk cache, and the offline snapshot.

Every article gets a stable id (a hash of its link), and its text is cached on disk the first
time it is built, so every iteration and every model sees identical text. When the network
fails, the cache answers, with a warning.

Everything read from the network goes through ``core.netsafe``: http(s) only, no loopback,
link-local or private address unless news.allow_private_addresses allows it (checked after DNS
resolution and on every redirect), a wall-clock deadline (news.timeout_s) and a byte cap
(news.max_fetch_bytes) per fetch. Pages are read in one pass without building a tree (``pages``); feed
summaries lose their HTML tags; an article's text is capped at news.max_article_chars, the cut
recorded on the item (``truncated_from``).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import re
import time
import urllib.parse
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from benchmark.tasks.sentiment.pages import cap_text, extract_paragraphs, html_to_text
from core import netsafe
from core.errors import ShootoutError

log = logging.getLogger(__name__)
USER_AGENT = "gguf-shootout/0.1 (+news benchmark; respects caches)"


class Article(BaseModel):
    id: str
    ticker: str
    company: str
    title: str
    url: str
    published: str | None = None
    text: str
    expected_sentiment: float | None = None
    truncated_from: int | None = None  # the text's length before news.max_article_chars cut it

    def to_item(self):
        """The task's item: the article text, its hand label as the gold value, the rest as fields
        (``truncated_from`` only when the text was cut)."""
        from benchmark.tasks.base import Item

        fields = {"ticker": self.ticker, "company": self.company, "title": self.title, "url": self.url,
                  "published": self.published}
        if self.truncated_from is not None:
            fields["truncated_from"] = self.truncated_from
        return Item(id=self.id, text=self.text, value=self.expected_sentiment, fields=fields)


def article_id(url: str) -> str:
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:12]


def compose_text(summary: str, paragraphs: list[str]) -> str:
    """The summary (unless it is a question, as teaser summaries often are) plus the paragraphs."""
    parts = []
    summary = (summary or "").strip()
    if summary and not summary.endswith("?"):
        parts.append(summary)
    parts.extend(p.strip() for p in paragraphs if p.strip())
    return " ".join(parts)


# --------------------------------------------------------------------------- snapshot

def default_snapshot_path() -> Path:
    return Path(str(resources.files("benchmark.tasks.sentiment").joinpath("news_snapshot.json")))


def load_snapshot(path: Path | None = None, max_articles: int | None = None) -> list[Article]:
    p = path or default_snapshot_path()
    try:
        data = json.loads(Path(p).read_text(encoding="utf-8"))
        items = data["items"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ShootoutError(f"cannot read the news snapshot {p}: {exc}",
                            "a snapshot is JSON with an 'items' list; see benchmark/tasks/sentiment/news_snapshot.json") from None
    out = []
    for i, item in enumerate(items):
        try:
            url = item.get("url") or f"snapshot://{item['ticker']}/{i}/{item['title']}"
            out.append(Article(
                id=article_id(url), ticker=item["ticker"], company=item.get("company", item["ticker"]),
                title=item["title"], url=url, published=item.get("published"),
                text=compose_text(item.get("summary", ""), item.get("paragraphs", [])),
                expected_sentiment=item.get("expected_sentiment")))
        except (KeyError, TypeError) as exc:
            raise ShootoutError(f"news snapshot {p}: items[{i}] lacks {exc}",
                                "each item needs ticker and title, and summary and/or paragraphs") from None
    return out[:max_articles] if max_articles else out


# --------------------------------------------------------------------------- pages and feeds

DEFAULT_MAX_FETCH_BYTES = 5_000_000
DEFAULT_MAX_ARTICLE_CHARS = 10_000
class NotAFeed(ValueError):
    pass


_HTML_START = re.compile(rb"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]",
                         re.I | re.S)


def parse_feed(body: bytes, content_type: str = ""):
    """feedparser's reading of an RSS or Atom document, or NotAFeed saying what came instead."""
    import feedparser

    try:
        feed = feedparser.parse(body, response_headers={"content-type": content_type} if content_type else None)
    except Exception as exc:  # noqa: BLE001 - a third-party parser on hostile input (e.g. &#1114112; in loose mode)
        raise NotAFeed(f"the answer could not be read as a feed ({type(exc).__name__}: {exc})") from None
    if feed.entries or feed.get("version"):
        return feed
    if "html" in content_type.lower() and "xml" not in content_type.lower() or _HTML_START.match(body[:4096]):
        raise NotAFeed("the answer is an HTML page, not an RSS or Atom feed (check news.rss_url)")
    why = feed.get("bozo_exception")
    raise NotAFeed("the answer is not an RSS or Atom feed" + (f" ({why})" if why else ""))


def entry_text(entry, key: str) -> str:
    """A feed entry's title or summary as plain text (HTML summaries lose their tags)."""
    value = entry.get(key) or ""
    detail = entry.get(f"{key}_detail") or {}
    if "html" in (detail.get("type") or "") or ("<" in value and ">" in value):
        return html_to_text(value)
    return " ".join(value.split())


def news_policy(settings=None, *, allow_private: bool | list[str] | tuple = False,
                timeout: float = 15, max_bytes: int = DEFAULT_MAX_FETCH_BYTES) -> netsafe.Policy:
    """The fetch policy of the news settings (or of the given values)."""
    if settings is not None:
        allow_private, timeout, max_bytes = (settings.allow_private_addresses, settings.timeout_s,
                                             settings.max_fetch_bytes)
    allow = allow_private if isinstance(allow_private, bool) else netsafe.parse_networks(allow_private)
    return netsafe.Policy(allow_private=allow, deadline_s=timeout, max_bytes=max_bytes, user_agent=USER_AGENT,
                          private_option="news.allow_private_addresses", deadline_option="news.timeout_s",
                          bytes_option="news.max_fetch_bytes")


class NewsCache:
    """One JSON file per article id under ``root`` (news.cache_dir)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def ensure(self) -> None:
        """The cache folder exists (it is created if missing); a file in its place is one clear error."""
        if self.root.exists() and not self.root.is_dir():
            raise ShootoutError(f"news.cache_dir {self.root} is a file, not a folder",
                                "point news.cache_dir at a folder (it is created if missing), or move the file")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ShootoutError(f"news.cache_dir {self.root} cannot be created ({exc.strerror or exc})",
                                "point news.cache_dir at a folder you can write") from None

    def path(self, aid: str) -> Path:
        return self.root / f"{aid}.json"

    def get(self, aid: str) -> Article | None:
        p = self.path(aid)
        if not p.is_file():
            return None
        try:
            return Article.model_validate_json(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache entry %s", p)
            return None

    def put(self, art: Article) -> None:
        self.ensure()
        tmp = self.path(art.id).with_suffix(".tmp")
        try:
            tmp.write_text(art.model_dump_json(indent=1), encoding="utf-8")
            tmp.replace(self.path(art.id))
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ShootoutError(f"cannot write the news cache {self.path(art.id)} ({exc.strerror or exc})",
                                "free some disk space, or point news.cache_dir at another folder") from None

    def for_ticker(self, ticker: str) -> list[Article]:
        if not self.root.is_dir():
            return []
        arts = [a for a in (self.get(p.stem) for p in sorted(self.root.glob("*.json"))) if a and a.ticker == ticker]
        return sorted(arts, key=lambda a: a.published or "", reverse=True)


def _published(entry) -> tuple[str | None, float | None]:
    st = entry.get("published_parsed") or entry.get("updated_parsed")
    if not st:
        return entry.get("published"), None
    try:
        ts = calendar.timegm(st)
        return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z"), ts
    except (OverflowError, ValueError, OSError):
        return entry.get("published"), None


def feed_url(url_template: str, ticker: str) -> str:
    """The feed URL of a ticker: the ticker percent-encoded into ``{ticker}`` (spaces, slashes and
    non-ASCII letters are safe)."""
    return url_template.format(ticker=urllib.parse.quote(ticker, safe=""))


def fetch_rss(tickers: dict[str, str], url_template: str, cache_dir: Path, *, max_age_days: float = 3,
              max_items_per_ticker: int = 8, fetch_pages: bool = True, timeout: float = 15,
              now: float | None = None, warn: Callable[[str], None] = log.warning,
              allow_private: bool | list[str] = False, max_bytes: int = DEFAULT_MAX_FETCH_BYTES,
              max_chars: int | None = DEFAULT_MAX_ARTICLE_CHARS, policy: netsafe.Policy | None = None) -> list[Article]:
    """Headlines per ticker from RSS, each article's text from its page, through the cache.

    Every fetch goes through ``core.netsafe`` (http(s) only, public addresses unless
    ``allow_private``, ``timeout`` seconds of wall clock and ``max_bytes`` at most); a failed feed
    falls back to the cache, a failed page to the feed's summary, each with one warning. An entry
    seen before (the same link, in this feed or another ticker's) does not count against
    ``max_items_per_ticker``. Text longer than ``max_chars`` is cut, its length kept in ``truncated_from``."""
    policy = policy or news_policy(allow_private=allow_private, timeout=timeout, max_bytes=max_bytes)
    cache = NewsCache(cache_dir)
    cache.ensure()
    now = time.time() if now is None else now
    out: list[Article] = []
    seen: set[str] = set()
    for ticker, company in tickers.items():
        url = feed_url(url_template, ticker)
        try:
            resp = netsafe.fetch(url, policy).raise_for_status()
            feed = parse_feed(resp.body, resp.headers.get("Content-Type", ""))
        except (netsafe.FetchError, NotAFeed) as exc:
            cached = [a for a in cache.for_ticker(ticker) if a.id not in seen][:max_items_per_ticker]
            reason = exc.message if isinstance(exc, netsafe.FetchError) else f"{url}: {exc}"
            hint = f"; {exc.hint}" if isinstance(exc, netsafe.FetchError) and exc.hint else ""
            warn(f"news feed for {ticker} failed ({reason}{hint}); using {len(cached)} cached article(s)")
            seen.update(a.id for a in cached)
            out.extend(_capped(a, max_chars) for a in cached)
            continue
        kept = 0
        for entry in feed.entries:
            if kept >= max_items_per_ticker:
                break
            link = (entry.get("link") or "").strip()
            if not link:
                continue
            aid = article_id(link)
            if aid in seen:  # a duplicate entry: not counted
                continue
            published, ts = _published(entry)
            if ts is not None and now - ts > max_age_days * 86400:
                continue
            art = cache.get(aid)
            if art is None:
                art = _build(entry, link, aid, ticker, company, published, policy, fetch_pages, max_chars, warn)
                if art is None:
                    continue
                cache.put(art)
            seen.add(aid)
            out.append(_capped(art, max_chars))
            kept += 1
    return out


def _build(entry, link: str, aid: str, ticker: str, company: str, published: str | None, policy: netsafe.Policy,
           fetch_pages: bool, max_chars: int | None, warn: Callable[[str], None]) -> Article | None:
    paragraphs: list[str] = []
    if fetch_pages:
        try:
            page = netsafe.fetch(link, policy).raise_for_status()
            paragraphs = extract_paragraphs(page.body, company, ticker, charset=page.charset, max_chars=max_chars)
        except netsafe.FetchError as exc:
            hint = f"; {exc.hint}" if exc.hint else ""
            warn(f"article page failed ({exc.message}{hint}); using the feed summary only")
    title = entry_text(entry, "title")
    text = compose_text(entry_text(entry, "summary"), paragraphs) or title
    if not text:
        return None
    text, full = cap_text(text, max_chars)
    return Article(id=aid, ticker=ticker, company=company, title=title, url=link, published=published, text=text,
                   truncated_from=full)


def _capped(art: Article, max_chars: int | None) -> Article:
    text, full = cap_text(art.text, max_chars)
    if full is None:
        return art
    return art.model_copy(update={"text": text, "truncated_from": art.truncated_from or full})


def load_articles(cfg, warn: Callable[[str], None] = log.warning) -> list[Article]:
    """The articles a config asks for: the snapshot, or RSS through the cache; every text capped
    at news.max_article_chars."""
    n = cfg.news
    if n.source == "snapshot":
        path = cfg.resolve(n.snapshot) if n.snapshot else None
        arts = [_capped(a, n.max_article_chars) for a in load_snapshot(path, n.max_articles)]
    else:
        arts = fetch_rss(n.tickers, n.rss_url, cfg.resolve(n.cache_dir), max_age_days=n.max_age_days,
                         max_items_per_ticker=n.max_items_per_ticker, fetch_pages=n.fetch_pages,
                         max_chars=n.max_article_chars, warn=warn, policy=news_policy(n))
        if n.max_articles:
            arts = arts[: n.max_articles]
    seen: set[str] = set()
    unique = [a for a in arts if not (a.id in seen or seen.add(a.id))]
    if not unique:
        raise ShootoutError("no news articles to benchmark on",
                            "check news.tickers and news.max_age_days, or set news.source: snapshot to run offline")
    return unique
