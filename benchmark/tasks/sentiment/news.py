"""Financial news: RSS headlines, article text, an on-disk cache, and the offline snapshot.

Every article gets a stable id (a hash of its link), and its text is cached on disk the first
time it is built, so every iteration and every model sees identical text. When the network
fails, the cache answers, with a warning.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

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

    def to_item(self):
        """The task's item: the article text, its hand label as the gold value, the rest as fields."""
        from benchmark.tasks.base import Item

        return Item(id=self.id, text=self.text, value=self.expected_sentiment,
                    fields={"ticker": self.ticker, "company": self.company, "title": self.title, "url": self.url,
                            "published": self.published})


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


# --------------------------------------------------------------------------- RSS + pages

def _http_get(url: str, timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - user-configured URL
        return resp.read()


def extract_paragraphs(html: bytes | str, company: str, ticker: str) -> list[str]:
    """The <p> and <h2> texts of a page that mention the company or the ticker."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    keys = [k for k in (company.lower(), ticker.lower()) if k]
    out: list[str] = []
    for tag in soup.find_all(["p", "h2"]):
        text = " ".join(tag.get_text(" ", strip=True).split())
        if text and any(k in text.lower() for k in keys) and text not in out:
            out.append(text)
    return out


class NewsCache:
    """One JSON file per article id under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, aid: str) -> Path:
        return self.root / f"{aid}.json"

    def get(self, aid: str) -> Article | None:
        p = self.path(aid)
        if not p.is_file():
            return None
        try:
            return Article.model_validate_json(p.read_text(encoding="utf-8"))
        except ValueError:
            log.warning("ignoring unreadable cache entry %s", p)
            return None

    def put(self, art: Article) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path(art.id).with_suffix(".tmp")
        tmp.write_text(art.model_dump_json(indent=1), encoding="utf-8")
        tmp.replace(self.path(art.id))

    def for_ticker(self, ticker: str) -> list[Article]:
        if not self.root.is_dir():
            return []
        arts = [a for a in (self.get(p.stem) for p in sorted(self.root.glob("*.json"))) if a and a.ticker == ticker]
        return sorted(arts, key=lambda a: a.published or "", reverse=True)


def _published(entry) -> tuple[str | None, float | None]:
    st = entry.get("published_parsed") or entry.get("updated_parsed")
    if not st:
        return entry.get("published"), None
    ts = calendar.timegm(st)
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z"), ts


def fetch_rss(tickers: dict[str, str], url_template: str, cache_dir: Path, *, max_age_days: float = 3,
              max_items_per_ticker: int = 8, fetch_pages: bool = True, timeout: float = 15,
              now: float | None = None, warn: Callable[[str], None] = log.warning) -> list[Article]:
    """Headlines per ticker from RSS, each article's text from its page, through the cache."""
    import feedparser

    cache = NewsCache(cache_dir)
    now = time.time() if now is None else now
    out: list[Article] = []
    for ticker, company in tickers.items():
        url = url_template.format(ticker=ticker)
        try:
            feed = feedparser.parse(_http_get(url, timeout))
            if feed.bozo and not feed.entries:
                raise ValueError(f"not an RSS feed ({feed.bozo_exception})")
        except (OSError, ValueError, urllib.error.URLError) as exc:
            cached = cache.for_ticker(ticker)[:max_items_per_ticker]
            warn(f"news feed for {ticker} failed ({url}: {exc}); using {len(cached)} cached article(s)")
            out.extend(cached)
            continue
        kept = 0
        for entry in feed.entries:
            if kept >= max_items_per_ticker:
                break
            link = entry.get("link")
            if not link:
                continue
            published, ts = _published(entry)
            if ts is not None and now - ts > max_age_days * 86400:
                continue
            aid = article_id(link)
            art = cache.get(aid)
            if art is None:
                paragraphs: list[str] = []
                if fetch_pages:
                    try:
                        paragraphs = extract_paragraphs(_http_get(link, timeout), company, ticker)
                    except (OSError, urllib.error.URLError, ValueError) as exc:
                        warn(f"article page failed ({link}: {exc}); using the feed summary only")
                text = compose_text(entry.get("summary", ""), paragraphs)
                if not text:
                    text = entry.get("title", "")
                if not text:
                    continue
                art = Article(id=aid, ticker=ticker, company=company, title=entry.get("title", ""),
                              url=link, published=published, text=text)
                cache.put(art)
            out.append(art)
            kept += 1
    return out


def load_articles(cfg, warn: Callable[[str], None] = log.warning) -> list[Article]:
    """The articles a config asks for: the snapshot, or RSS through the cache."""
    n = cfg.news
    if n.source == "snapshot":
        path = cfg.resolve(n.snapshot) if n.snapshot else None
        arts = load_snapshot(path, n.max_articles)
    else:
        arts = fetch_rss(n.tickers, n.rss_url, cfg.resolve(n.cache_dir), max_age_days=n.max_age_days,
                         max_items_per_ticker=n.max_items_per_ticker, fetch_pages=n.fetch_pages,
                         timeout=n.timeout_s, warn=warn)
        if n.max_articles:
            arts = arts[: n.max_articles]
    seen: set[str] = set()
    unique = [a for a in arts if not (a.id in seen or seen.add(a.id))]
    if not unique:
        raise ShootoutError("no news articles to benchmark on",
                            "check news.tickers and news.max_age_days, or set news.source: snapshot to run offline")
    return unique
