"""What a live OpenAI-compatible server (written for mlx_lm.server) does with each request field a
benchmark needs: prints one row per capability, found by asking the server, never assumed.

Rows: health and model listing; the model names it answers to; chat completions plain and
streamed (with the usage chunk); logprobs alone and with top_logprobs (the largest count taken,
the shape of an entry, whether an entry names the sampled token, whether the list is sorted);
response_format with a JSON schema (enforced or not); stop sequences (and what is left of the
text before them); seed (reproducible at temperature 1); logit_bias; n; usage and timing fields;
/v1/completions; a LoRA adapter per request (``--adapter DIR``).

Usage: python benchmarks/mlx_probe.py --base-url http://127.0.0.1:8080 [--adapter DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request

PROMPT = [{"role": "user", "content": "Say whether the news is positive or negative: Acme shares rose."}]


class Server:
    def __init__(self, base_url: str, timeout: float = 120):
        self.root = base_url.rstrip("/").removesuffix("/v1")
        self.timeout = timeout

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.root + path, timeout=self.timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError) as e:  # e.g. a body cut short
            return -1, str(e).encode()

    def post(self, path: str, body: dict) -> tuple[int, bytes]:
        req = urllib.request.Request(self.root + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def chat(self, **fields) -> tuple[int, dict]:
        status, body = self.post("/v1/chat/completions", {"messages": PROMPT, "max_tokens": 8, "temperature": 0,
                                                          **fields})
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"raw": body.decode(errors="replace")}


def _content(d: dict) -> str | None:
    try:
        return d["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None


def _error(status: int, d: dict) -> str:
    err = d.get("error", d.get("raw", d))
    if isinstance(err, dict):
        err = err.get("message", err)
    return f"HTTP {status}: {str(err)[:160]}"


def probe(base_url: str, adapter: str | None = None) -> list[dict]:
    s = Server(base_url)
    rows: list[dict] = []

    def row(capability: str, supported, detail: str) -> None:
        rows.append({"capability": capability, "supported": supported, "detail": detail})

    status, body = s.get("/health")
    row("GET /health", status == 200, f"HTTP {status} {body.decode(errors='replace')[:80]}")
    status, body = s.get("/v1/models")
    try:
        ids = [m["id"] for m in json.loads(body)["data"]]
        row("GET /v1/models", True, f"ids: {ids}")
    except (ValueError, KeyError, TypeError):
        ids = []
        row("GET /v1/models", False, f"HTTP {status} with an unreadable body ({len(body)} bytes): "
                                     "mlx_lm.server scans the Hugging Face cache and fails when it does not exist")

    status, plain = s.chat()
    text = _content(plain)
    row("chat completion", status == 200 and isinstance(text, str),
        f"content {text!r}, finish_reason {plain.get('choices', [{}])[0].get('finish_reason')!r}, "
        f"model echoed {plain.get('model')!r}" if status == 200 else _error(status, plain))
    usage = plain.get("usage", {})
    row("usage fields", bool(usage), json.dumps(usage))
    timing_keys = sorted(k for k in plain if k not in ("id", "object", "created", "model", "choices", "usage",
                                                        "system_fingerprint"))
    row("timings", bool(timing_keys) or "timings" in usage, f"top-level keys besides the standard ones: "
                                                             f"{timing_keys or 'none'}; time it on the client")

    names = {}
    for name in ["default_model", *ids, "no-such-model"]:
        st, d = s.chat(model=name, max_tokens=1)
        names[name] = "ok" if st == 200 else _error(st, d)
    st, d = s.post("/v1/chat/completions", {"messages": PROMPT, "max_tokens": 1})
    names["(no model field)"] = "ok" if st == 200 else f"HTTP {st}"
    row("model names", names.get("default_model") == "ok", "; ".join(f"{k}: {v}" for k, v in names.items()))

    status, raw = s.post("/v1/chat/completions", {"messages": PROMPT, "max_tokens": 6, "temperature": 0,
                                                  "stream": True, "logprobs": True, "top_logprobs": 2,
                                                  "stream_options": {"include_usage": True}})
    lines = raw.decode(errors="replace").splitlines()
    data = [ln[6:] for ln in lines if ln.startswith("data: ")]
    chunks = [json.loads(x) for x in data if x != "[DONE]"]
    comments = [ln for ln in lines if ln.startswith(":")]
    deltas = "".join(c["choices"][0].get("delta", {}).get("content") or "" for c in chunks if c.get("choices"))
    usage_chunk = next((c for c in chunks if c.get("usage")), None)
    row("streaming", status == 200 and data[-1:] == ["[DONE]"],
        f"{len(chunks)} data chunks, text {deltas!r}, SSE comment lines {len(comments)} "
        f"({comments[0][:30] + '...' if comments else 'none'}), usage chunk "
        f"{'yes (stream_options.include_usage)' if usage_chunk else 'no'}, logprobs in chunks "
        f"{'yes' if any('logprobs' in c['choices'][0] for c in chunks if c.get('choices')) else 'no'}")

    st, lp = s.chat(logprobs=True, max_tokens=6)
    entries = (lp.get("choices", [{}])[0].get("logprobs") or {}).get("content") or []
    sampled = [e.get("id") for e in entries]
    row("logprobs", st == 200 and bool(entries),
        f"{len(entries)} entries for {lp.get('usage', {}).get('completion_tokens')} tokens; entry keys "
        f"{sorted(entries[0]) if entries else None}" if st == 200 else _error(st, lp))

    accepted = {}
    for k in (1, 5, 10, 11, 12, 20):
        st, d = s.chat(logprobs=True, top_logprobs=k, max_tokens=1)
        accepted[k] = "ok" if st == 200 else _error(st, d)
    largest = max((k for k, v in accepted.items() if v == "ok"), default=0)
    st, tp = s.chat(logprobs=True, top_logprobs=max(largest, 1), max_tokens=6)
    tentries = (tp.get("choices", [{}])[0].get("logprobs") or {}).get("content") or []
    best = [max(e["top_logprobs"], key=lambda t: t["logprob"]).get("id") for e in tentries if e.get("top_logprobs")]
    names_sampled = [e.get("id") for e in tentries]
    ordered = all([t["logprob"] for t in e["top_logprobs"]] == sorted((t["logprob"] for t in e["top_logprobs"]),
                                                                      reverse=True) for e in tentries)
    row("top_logprobs", largest > 0,
        f"largest accepted {largest} ({'; '.join(f'{k}: {v}' for k, v in accepted.items() if v != 'ok')}); "
        f"entry keys {sorted(tentries[0]) if tentries else None}, alternative keys "
        f"{sorted(tentries[0]['top_logprobs'][0]) if tentries else None}; alternatives sorted by logprob: "
        f"{ordered}; at temperature 0 the highest alternative is the sampled token (ids of a logprobs-only "
        f"request): {best == sampled}; the entry's own token is the sampled one: {names_sampled == sampled}")
    if tentries:
        total = sum(2.718281828 ** t["logprob"] for t in tentries[0]["top_logprobs"])
        row("logprob scale", total <= 1.0001, f"the first position's {len(tentries[0]['top_logprobs'])} "
                                              f"alternatives hold probability {total:.3f} (natural log, "
                                              "softmax over the whole vocabulary, before temperature)")

    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
              "required": ["label"], "additionalProperties": False}
    st, rf = s.chat(max_tokens=24, response_format={"type": "json_schema",
                                                    "json_schema": {"name": "label", "schema": schema}})
    out = _content(rf)
    try:
        parsed = json.loads(out or "")
        valid = isinstance(parsed, dict) and parsed.get("label") in ("positive", "negative") and len(parsed) == 1
    except ValueError:
        valid = False
    row("response_format json_schema", valid,
        f"HTTP {st}; reply {out!r}: " + ("follows the schema" if valid else "does not follow the schema "
                                         "(the field is accepted and not enforced)"))

    st, long = s.chat(max_tokens=24)
    full = _content(long) or ""
    words = [w for w in full.split() if len(w) >= 3]
    if words:
        stop = words[len(words) // 2]
        st, d = s.chat(max_tokens=24, stop=[stop])
        got = _content(d) or ""
        before = full[:full.find(stop)]
        finish = d["choices"][0].get("finish_reason")
        row("stop sequences", st == 200 and stop not in got,
            f"stop {stop!r} (in the reply without it): reply {got!r}, finish_reason {finish!r}; the text before "
            f"the stop {'kept whole' if got == before else f'not kept whole: {before!r} expected'}")
        row("stop ends generation", finish == "stop",
            "yes" if finish == "stop" else "no: the stop text is cut out of the reply and generation goes on "
            "(the server stops on the stop word's own tokens only)")
    else:
        row("stop sequences", None, f"no word to stop on in {full!r}")

    a = [_content(s.chat(temperature=1.0, seed=7, max_tokens=12)[1]) for _ in range(2)]
    b = [_content(s.chat(temperature=1.0, max_tokens=12)[1]) for _ in range(2)]
    row("seed", a[0] == a[1], f"seed 7 twice at temperature 1: {'same' if a[0] == a[1] else 'different'} "
                              f"({a[0]!r}); without a seed: {'same' if b[0] == b[1] else 'different'}")

    if sampled:
        target = sampled[0] + 1
        st, d = s.chat(logprobs=True, max_tokens=1, logit_bias={str(target): 100})
        got = [e.get("id") for e in ((d.get("choices", [{}])[0].get("logprobs") or {}).get("content") or [])]
        row("logit_bias", got[:1] == [target], f"+100 on token {target}: first token {got[:1]} "
                                               "(keys are token ids; the logprobs then include the bias)")

    if tentries and len(tentries[0]["top_logprobs"]) >= 4:
        # label scoring: the same large bias on each label's first token keeps their odds and pushes
        # every other token out, so the biased top list is the distribution over the labels alone
        alts = sorted(tentries[0]["top_logprobs"], key=lambda t: -t["logprob"])
        labels = [alts[0], alts[2], alts[3]]
        st, d = s.chat(logprobs=True, top_logprobs=3, max_tokens=1,
                       logit_bias={str(t["id"]): 100 for t in labels})
        biased = {t["id"]: t["logprob"] for t in (d.get("choices", [{}])[0].get("logprobs") or {})
                  .get("content", [{}])[0].get("top_logprobs", [])}
        mass = sum(2.718281828 ** v for v in biased.values())
        unbiased_odds = labels[0]["logprob"] - labels[1]["logprob"]
        biased_odds = biased.get(labels[0]["id"], 0) - biased.get(labels[1]["id"], 0)
        same = set(biased) == {t["id"] for t in labels} and abs(unbiased_odds - biased_odds) < 1e-2
        row("label scoring by logit_bias", same and mass > 0.99,
            f"+100 on 3 first tokens: the top 3 are those tokens {set(biased) == {t['id'] for t in labels}}, "
            f"holding probability {mass:.4f}; log-odds of two of them {unbiased_odds:.4f} unbiased, "
            f"{biased_odds:.4f} biased")

    st, d = s.chat(n=2, max_tokens=2)
    row("n > 1", len(d.get("choices", [])) == 2, f"{len(d.get('choices', []))} choices for n=2")

    st, body = s.post("/v1/completions", {"prompt": "Acme shares", "max_tokens": 4, "temperature": 0})
    try:
        txt = json.loads(body)["choices"][0]["text"]
    except (ValueError, KeyError, IndexError):
        txt = None
    row("/v1/completions", st == 200 and isinstance(txt, str), f"HTTP {st}, text {txt!r}")

    if adapter:
        served = ids[-1] if ids else None  # mlx_lm.server lists the --model folder last, resolved
        st, d = s.chat(model=served, adapters=adapter, max_tokens=8) if served else (0, {})
        with_adapter = _content(d)
        st1, d1 = s.chat(adapters=adapter, max_tokens=8)
        st2, d2 = s.chat(model=served, adapters=adapter + "-missing", max_tokens=1) if served else (0, {})
        row("LoRA adapter per request", st == 200 and with_adapter != text,
            f"'adapters': DIR with 'model': {served!r}: HTTP {st}, reply {with_adapter!r} (without: {text!r}); "
            f"with 'model' default_model or left out: reply {_content(d1)!r} "
            f"({'the adapter ignored' if _content(d1) == text else 'applied'}); a missing folder: {_error(st2, d2)}")
    else:
        row("LoRA adapter per request", None, "not probed (give --adapter DIR)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", default="http://127.0.0.1:8080")
    ap.add_argument("--adapter", default=None, help="a LoRA adapter folder the server can read")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = probe(args.base_url, args.adapter)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    width = max(len(r["capability"]) for r in rows)
    for r in rows:
        mark = {True: "yes", False: "no", None: "-"}[r["supported"]]
        print(f"{r['capability']:<{width}}  {mark:<3}  {r['detail']}")


if __name__ == "__main__":
    main()
