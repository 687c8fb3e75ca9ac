"""Fuzz tests (hypothesis), bounded in examples and therefore in time: the feed and page parsers,
the URL policy, the config loader, the reply parsers and the OpenAI-compatible answer reader.

Each property is what a user relies on: hostile input gives a result or the one kind of error
the caller turns into a clear message (never another exception, never a hang), and what comes
out obeys the documented limits. No network: nothing here resolves a name or connects."""

from __future__ import annotations

import ipaddress
import json
from email.message import Message

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.backends.openai_compat import OpenAICompatBackend
from benchmark.config import parse_config
from benchmark.tasks.classify import ClassifyTask, ClassifyTaskSpec
from benchmark.tasks.sentiment import SENTIMENT
from benchmark.tasks.sentiment.news import NotAFeed, entry_text, parse_feed
from benchmark.tasks.sentiment.pages import cap_text, decode_html, extract_paragraphs, html_to_text
from core import netsafe
from core.errors import ConfigError, ShootoutError

# every test here together stays well under a minute on 2 cores; the same examples every run
# (derandomized), and no example database is written
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
FEW = settings(FUZZ, max_examples=60)

TAGS = ["p", "h2", "div", "b", "a", "script", "style", "noscript", "br", "li", "table", "template", "svg"]
PIECES = ["<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&#x41;", "&#99999999;", "&#1114112;", "&", ">",
          "<!doctype html>", "<?xml version='1.0'?>", "Acme", "ACME", "\x00", "\ufeff", "<br/>", "<p/>"]


def _html(pieces: list[str]):
    piece = st.one_of(st.text(st.characters(blacklist_characters="<"), max_size=30),
                      st.sampled_from(TAGS).map(lambda t: f"<{t}>"), st.sampled_from(TAGS).map(lambda t: f"</{t}>"),
                      st.sampled_from(pieces))
    return st.lists(piece, max_size=60).map("".join)


html_text = _html(PIECES + ["<", "<p class='x"])
# no attribute left open and no bare "<" (which with the next text can open a "<?...>" bogus comment):
# after those, a browser too reads the following <script> tag as something else, and its content as text
closed_html = _html(PIECES)


@FUZZ
@given(page=st.one_of(html_text, st.binary(max_size=2000).map(lambda b: b.decode("latin-1"))),
       as_bytes=st.booleans(), charset=st.one_of(st.none(), st.sampled_from(["utf-8", "cp1252", "shift_jis",
                                                                              "utf-16", "no-such-charset", ""])),
       max_chars=st.one_of(st.none(), st.integers(1, 500)))
def test_page_paragraphs(page, as_bytes, charset, max_chars):
    body = page.encode("utf-8", "surrogatepass") if as_bytes else page
    out = extract_paragraphs(body, "Acme", "ACME", charset=charset, max_chars=max_chars)
    assert isinstance(out, list) and len(out) == len(set(out))  # each paragraph once
    for p in out:
        assert p and p == " ".join(p.split()) and "acme" in p.lower()
    if max_chars is not None and out:  # reading stops at the cap (the last paragraph may cross it)
        assert sum(len(p) + 1 for p in out[:-1]) < max_chars


@FUZZ
@given(before=closed_html, after=html_text)
def test_summary_text(before, after):
    """Tags go, scripts and styles go with their content, spaces collapse, whatever surrounds them."""
    text = html_to_text(before + "<script>if (a < b) SCRIPTX()</script><style>p {STYLEX: 1}</style>" + after)
    assert text == " ".join(text.split())
    assert "SCRIPTX" not in text and "STYLEX" not in text


@FUZZ
@given(body=st.binary(max_size=3000), charset=st.one_of(st.none(), st.text(max_size=20)))
def test_decoding_never_fails(body, charset):
    assert isinstance(decode_html(body, charset), str)


@FUZZ
@given(text=st.text(max_size=400), max_chars=st.one_of(st.none(), st.integers(1, 300)))
def test_article_cap(text, max_chars):
    out, full = cap_text(text, max_chars)
    assert text.startswith(out)
    if max_chars and len(text) > max_chars:
        assert len(out) <= max_chars and full == len(text)
    else:
        assert (out, full) == (text, None)


def _rss(titles, descriptions, links):
    from xml.sax.saxutils import escape

    items = "".join(f"<item><title>{escape(t)}</title><link>{escape(l)}</link><description>{escape(d)}</description>"
                    f"</item>" for t, d, l in zip(titles, descriptions, links))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>{items}</channel></rss>'.encode()


xml_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)


@FUZZ
@given(body=st.one_of(
    st.binary(max_size=2000),
    html_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.builds(_rss, st.lists(xml_text, max_size=5), st.lists(st.one_of(xml_text, html_text), max_size=5),
              st.lists(st.one_of(xml_text, st.just("http://x.invalid/a b"), st.just("file:///etc/passwd")), max_size=5)),
    st.sampled_from([b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
                     b'<!ENTITY c "&b;&b;&b;&b;&b;&b;">]><rss version="2.0"><channel><item><title>&c;</title>'
                     b'</item></channel></rss>',
                     b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><rss version="2.0">'
                     b'<channel><item><title>&x;</title></item></channel></rss>'])),
    content_type=st.sampled_from(["", "application/rss+xml", "text/html", "text/xml; charset=windows-1252",
                                  "application/atom+xml; charset=bogus"]))
def test_feeds(body, content_type):
    try:
        feed = parse_feed(body, content_type)
    except NotAFeed as exc:
        assert str(exc).startswith("the answer ")
        return
    for entry in feed.entries:
        for key in ("title", "summary"):
            text = entry_text(entry, key)
            assert text == " ".join(text.split())
            assert "root:" not in text  # no external entity was read


@FUZZ
@given(url=st.one_of(st.text(max_size=80), st.from_regex(r"\A(https?|file|ftp|FILE|HtTp):/{0,3}[^\s]{0,40}\Z"),
                     st.builds(lambda h, p: f"http://{h}/{p}", st.text(max_size=20), st.text(max_size=20))))
def test_urls_are_split_or_refused_with_one_error(url):
    try:
        scheme, host, port, target = netsafe._split(url)
    except netsafe.FetchError as exc:
        assert exc.url == url and exc.reason
        return
    assert scheme in ("http", "https") and host and 0 <= port <= 65535
    assert target.startswith("/") and not any(c.isspace() or ord(c) > 126 for c in target)


@FUZZ
@given(ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
       allow=st.one_of(st.booleans(), st.lists(st.sampled_from(["127.0.0.0/8", "10.0.0.0/8", "::1", "fc00::/7"]),
                                               max_size=2).map(lambda v: netsafe.parse_networks(v))))
def test_address_policy(ip, allow):
    policy = netsafe.Policy(allow_private=allow, private_option="news.allow_private_addresses")
    public = netsafe.address_kind(ip) is None
    listed = isinstance(allow, tuple) and any(ip.version == n.version and ip in n for n in allow)
    try:
        policy.check_address("http://h/", "h", str(ip))
        allowed = True
    except netsafe.Refused as exc:
        allowed = False
        assert "news.allow_private_addresses" in exc.hint
    assert allowed == (public or allow is True or listed)
    if isinstance(ip, ipaddress.IPv4Address) and (ip.is_loopback or ip.is_private or ip.is_link_local):
        assert not public


# ------------------------------------------------------------------ config loader

MODEL = "models:\n  - {name: a, backend: openai, base_url: 'http://127.0.0.1:1/v1', family: f, quant: Q4_0}\n"
scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=20), st.sampled_from(["{ticker}", "{}", "{region}", "http://x/{ticker}", "embedded",
                                                          "[a, b]", "- x", "&a", "*a", "!!python/object:os.system"]))
yaml_value = st.recursive(scalar, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                          st.dictionaries(st.text(max_size=10), kids, max_size=4)),
                          max_leaves=12)
KEYS = {"task": ["sentiment", "nope"], "news": ["source", "rss_url", "tickers", "timeout_s", "max_fetch_bytes",
                                                "max_article_chars", "allow_private_addresses", "cache_dir"],
        "run": ["iterations", "temperature", "num_ctx", "seed", "database"], "compare": [],
        "models": ["name", "backend", "path", "base_url", "family", "quant", "options"]}


@st.composite
def configs(draw):
    """A config as a mapping: known keys with values of any type, some unknown keys."""
    data = {}
    for section, keys in KEYS.items():
        if draw(st.booleans()):
            if section in ("news", "run"):
                data[section] = {k: draw(yaml_value) for k in draw(st.lists(st.sampled_from(keys), max_size=4))}
            elif section == "models":
                data[section] = [{k: draw(yaml_value) for k in draw(st.lists(st.sampled_from(keys), max_size=6))}
                                 for _ in range(draw(st.integers(0, 2)))]
            else:
                data[section] = draw(yaml_value)
    return data


def _dump(data) -> str:
    import io

    from ruamel.yaml import YAML

    buf = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, buf)
    return buf.getvalue()


@FEW
@given(text=st.one_of(st.text(max_size=300), configs().map(_dump), yaml_value.map(_dump),
                      st.text(max_size=200).map(lambda t: MODEL + t)))
def test_config_loader(text):
    try:
        cfg = parse_config(text, check_files=False)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return
    assert cfg.models  # a config that loads has models


# ------------------------------------------------------------------ reply parsers

json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
                          lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                 st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                          max_leaves=10)
sentiment_like = st.fixed_dictionaries(
    {}, optional={"reasoning": st.one_of(st.text(max_size=250), json_value),
                  "sentiment": st.one_of(st.floats(), st.integers(-3, 3), json_value),
                  "confidence": st.one_of(st.floats(), st.integers(-3, 3), json_value),
                  "label": st.one_of(st.sampled_from(["spam", "ham", "Spam", "eggs"]), json_value),
                  "extra": json_value})
reply_text = st.one_of(st.text(max_size=200), json_value.map(json.dumps), sentiment_like.map(json.dumps),
                       sentiment_like.map(lambda d: "```json\n" + json.dumps(d) + "\n```"))


@pytest.mark.slow
@FUZZ
@given(text=reply_text)
def test_sentiment_reply_parser(text):
    a = SENTIMENT.parse(text)
    if a.valid:
        assert -1 <= a.value <= 1 and 0 <= a.confidence <= 1 and a.error is None
        assert a.fields["reasoning"].strip() and len(a.fields["reasoning"]) <= 200
    else:
        assert a.error and a.value is None


@pytest.fixture(scope="module")
def classify_tasks():
    spec = {"name": "spam", "kind": "classify", "labels": ["spam", "ham"], "data": {"path": "unused.csv"}}
    return [ClassifyTask(ClassifyTaskSpec.model_validate({**spec, "answer": a})) for a in ("json", "text")]


@pytest.mark.slow
@FUZZ
@given(text=st.one_of(reply_text, st.sampled_from(["spam", " Ham. ", "'SPAM'!", "**ham**", "", "eggs"])))
def test_classify_reply_parser(classify_tasks, text):
    for task in classify_tasks:
        a = task.parse(text)
        if a.valid:
            assert a.label in ("spam", "ham") and a.fields == {"label": a.label}
        else:
            assert a.error and a.label is None


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), json_value.map(lambda v: json.dumps(v).encode()),
                      st.fixed_dictionaries({}, optional={
                          "choices": st.one_of(json_value, st.lists(st.fixed_dictionaries({}, optional={
                              "message": st.one_of(json_value, st.fixed_dictionaries({}, optional={
                                  "content": json_value})),
                              "finish_reason": json_value}), max_size=2)),
                          "usage": st.one_of(json_value, st.fixed_dictionaries({}, optional={
                              "prompt_tokens": json_value, "completion_tokens": json_value,
                              "prompt_tokens_details": json_value})),
                          "timings": st.one_of(json_value, st.fixed_dictionaries({}, optional={
                              "prompt_ms": json_value, "predicted_ms": json_value, "cache_n": json_value}))})
                      .map(lambda d: json.dumps(d).encode())))
@pytest.mark.slow
def test_openai_answers(body):
    """A 2xx answer of any shape is a Reply or the transport's BadAnswer (stored as a failed call by the
    call policy): never a crash."""
    from benchmark.backends.http import BadAnswer, Exchange

    backend = OpenAICompatBackend("http://127.0.0.1:1/v1", "m", name="m")
    ex = Exchange(status=200, reason="OK", headers=Message(), body=body, t0=0.0, t_end=0.5, attempts=1)
    try:
        reply = backend.reply_from(ex)
    except BadAnswer as exc:
        assert exc.kind in ("not_json", "wrong_shape") and isinstance(exc.detail, str)
        return
    assert isinstance(reply.text, str) and reply.prompt_tokens >= 0 and reply.completion_tokens >= 0
    assert reply.finish_reason in ("stop", "length")


@FUZZ
@given(status=st.sampled_from([400, 413, 422, 500, 503]),
       body=st.one_of(st.binary(max_size=200), json_value.map(lambda v: json.dumps(v).encode()),
                      st.builds(lambda m, n, c: json.dumps({"error": {"message": m, "n_prompt_tokens": n,
                                                                      "n_ctx": c, "type": "exceed_context_size_error"}}
                                                           ).encode(), st.text(max_size=50), json_value, json_value)))
def test_openai_error_answers(status, body):
    """An error answer is a PromptTooLong, or None (the caller reports the HTTP error): never a crash."""
    from benchmark.backends.http import Exchange

    backend = OpenAICompatBackend("http://127.0.0.1:1/v1", "m", name="m")
    ex = Exchange(status=status, reason="Error", headers=Message(), body=body, t0=0.0, t_end=0.1, attempts=1)
    detail = ex.detail()
    assert isinstance(detail, str) and len(detail) <= 300
    try:
        too_long = backend._too_long(status, detail, ex.error_object())
    except (TypeError, ValueError):
        pytest.fail("a malformed error answer crashed the backend")
    if too_long is not None:
        assert too_long.prompt_tokens >= 0 and too_long.n_ctx >= 0