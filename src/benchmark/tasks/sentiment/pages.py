"""Article pages and feed summaries as text: one pass over the HTML without building a tree (the
<p> and <h2> blocks that name the company or ticker, each once), the charset of the HTTP header or
the page's meta tag honoured, tags dropped from summaries, and text capped at a word boundary."""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "noscript", "template"})
_COLLECT = frozenset({"p", "h2"})
# a block that starts inside a <p> closes it (HTML's implied end tag)
_BREAK_P = frozenset({"address", "article", "aside", "blockquote", "details", "div", "dl", "fieldset", "figure",
                      "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol", "p",
                      "pre", "section", "table", "ul"})
_BLOCKS = _BREAK_P | {"br", "li", "td", "th", "tr", "dt", "dd", "h2"}
_OPEN_AT_END = re.compile(r"<[A-Za-z!/?]")
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)


class _TextParser(HTMLParser):
    """One pass over the page, no tree: the text of every <p> and <h2> (``blocks=True``), or all of
    the text (``blocks=False``), without scripts and styles. Linear in the page's size. Block tags
    and <br> separate words; inline tags (<b>, <a>...) do not."""

    def __init__(self, blocks: bool):
        super().__init__(convert_charrefs=True)
        self.blocks = blocks
        self.skip = 0
        self.current: str | None = None  # the <p>/<h2> being collected
        self.buf: list[str] = []
        self.out: list[str] = []

    def _emit(self) -> None:
        text = " ".join("".join(self.buf).split())
        self.buf = []
        self.current = None
        if text:
            self.out.append(text)

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self.skip += 1
            return
        if self.blocks and self.current is not None and (tag in _COLLECT or (self.current == "p" and tag in _BREAK_P)):
            self._emit()
        if self.blocks and tag in _COLLECT and not self.skip:
            self.current = tag
        elif tag in _BLOCKS:
            self.buf.append(" ")

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCKS:
            self.buf.append(" ")

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif self.blocks and tag == self.current:
            self._emit()
        elif tag in _BLOCKS:
            self.buf.append(" ")

    def handle_data(self, data):
        if not self.skip and (self.current is not None or not self.blocks):
            self.buf.append(data)

    def finish(self) -> list[str]:
        # a comment or tag still open at the end runs to the end of the document, as in a browser
        # (HTMLParser would hand it back as text: an unclosed "<!--" would let a <script> through)
        if _OPEN_AT_END.match(self.rawdata):
            self.rawdata = ""
        self.close()
        if self.blocks:
            if self.current is not None:
                self._emit()
            return self.out
        return [" ".join("".join(self.buf).split())]


def decode_html(body: bytes, charset: str | None = None) -> str:
    """A page's text: the charset of the HTTP header first, then a byte-order mark, then a <meta>
    charset, then UTF-8, then Windows-1252. Never fails (undecodable bytes become U+FFFD)."""
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom):].decode(enc, errors="replace")
    candidates = [charset]
    m = _META_CHARSET.search(body[:4096])
    if m:
        candidates.append(m.group(1).decode("ascii"))
    for enc in candidates:
        if not enc:
            continue
        try:
            codecs.lookup(enc)
        except (LookupError, ValueError):  # unknown, or not a name at all
            continue
        return body.decode(enc, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace")


def extract_paragraphs(html: bytes | str, company: str, ticker: str, *, charset: str | None = None,
                       max_chars: int | None = None) -> list[str]:
    """The <p> and <h2> texts of a page that mention the company or the ticker, each once, in page
    order. One pass, no tree; stops reading once ``max_chars`` of matching text are collected."""
    text = decode_html(html, charset) if isinstance(html, (bytes, bytearray)) else html
    keys = [k for k in (company.lower(), ticker.lower()) if k]
    parser = _TextParser(blocks=True)
    seen: set[str] = set()
    out: list[str] = []
    total = 0
    step = 1 << 16
    for i in range(0, max(len(text), 1), step):
        parser.feed(text[i:i + step])
        total = _keep(parser, keys, seen, out, total)
        if max_chars is not None and total >= max_chars:
            return out
    parser.finish()
    _keep(parser, keys, seen, out, total)
    return out


def _keep(parser: _TextParser, keys: list[str], seen: set[str], out: list[str], total: int) -> int:
    for text in parser.out:
        if text not in seen and any(k in text.lower() for k in keys):
            seen.add(text)
            out.append(text)
            total += len(text) + 1
    parser.out = []
    return total


def html_to_text(html: str) -> str:
    """The text of an HTML fragment (a feed summary): tags dropped, entities decoded, spaces collapsed."""
    parser = _TextParser(blocks=False)
    parser.feed(html)
    return parser.finish()[0]


def cap_text(text: str, max_chars: int | None) -> tuple[str, int | None]:
    """(text, None), or the text cut at a word boundary before ``max_chars`` and its original length."""
    if not max_chars or len(text) <= max_chars:
        return text, None
    cut = text[:max_chars]
    space = cut.rfind(" ", max(0, max_chars - 200))
    return (cut[:space] if space > 0 else cut).rstrip(), len(text)
