"""Label probabilities through Ollama's /api/chat `logprobs` / `top_logprobs` (0.12.11 and later),
against tests/ollama_fixture.py (Ollama's server code at fb30760: api/types.go ChatRequest and
Logprob, server/routes.go ChatHandler and writeChatResponse, server/logprob.go toAPILogprobs,
llm/llama_server.go Completion and convertLogprobs); a `live` test asks a real server when
OLLAMA_HOST answers."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3

import httpx
import pytest

from tests.conftest import ROOT, shootout
from tests.ollama_fixture import FakeModel, ollama  # noqa: F401

TAG = "gemma3:270m"
LABELS = ("negative", "positive")
GOOD = ("wonderful", "moving", "delight", "funny", "charm", "best", "beautiful", "grinning", "humming", "great")


def p_positive(body: dict) -> float:
    """The fake model's belief: 0.85 for a sentence with a good word, 0.3 without (a raw
    /api/generate, the backend's token count, has a prompt instead of messages)."""
    text = (body["messages"][-1]["content"] if body.get("messages") else body.get("prompt", "")).lower()
    return 0.85 if any(w in text for w in GOOD) else 0.3


def reply(body: dict) -> str:
    label = "positive" if p_positive(body) > 0.5 else "negative"
    return json.dumps({"label": label}) if body.get("format") else label


def distribution(body: dict, before: str) -> dict[str, float]:
    """Raw next-token log-probabilities: at the label's place both labels, a spelling of one, and
    tokens the JSON constraint would not allow; elsewhere the token the reply goes on with."""
    at_label = before.endswith('"label": "') or (not body.get("format") and before == "")
    if at_label:
        p = p_positive(body)
        return {"positive": math.log(p * 0.8), "pos": math.log(p * 0.1), "negative": math.log((1 - p) * 0.9),
                "The": math.log(0.05)}
    rest = reply(body)[len(before):]
    from tests.ollama_fixture import tokenize

    nxt = tokenize(rest)[1:2] or [""]
    return {nxt[0]: -0.02, "\n": -4.5}


def expected_probs(body: dict) -> dict[str, float]:
    """Independently: the label tokens listed at the label's place, renormalized."""
    p = p_positive(body)
    pos, neg = p * 0.8 + p * 0.1, (1 - p) * 0.9
    return {"negative": neg / (pos + neg), "positive": pos / (pos + neg)}


def _config(tmp_path, answer: str = "json", options: str = "") -> "Path":  # noqa: F821
    text = (ROOT / "examples" / "sst2" / "config.yaml").read_text()
    head = text.split("\nmodels:\n", 1)[0]
    head = head.replace("  answer: json", f"  decoding: logprob\n  answer: {answer}")
    head = head.replace("    evaluate: validation", "    max_items: 4\n    evaluate: validation")
    head = head.replace("  iterations: 3", "  iterations: 2")
    shutil.copytree(ROOT / "examples" / "sst2" / "data", tmp_path / "data")
    path = tmp_path / "config.yaml"
    path.write_text(head + f"\nmodels:\n  - name: olla\n    backend: ollama\n    tag: '{TAG}'\n"
                           f"    family: gemma3-270m\n    quant: Q4_K_M\n    prompt_style: few_shot\n{options}"
                           "output:\n  reports_dir: reports\n  heatmaps_dir: heatmaps\n")
    return path


def _scorings(fake) -> list[dict]:
    return [b for b in fake.chats() if b.get("messages") and b.get("logprobs")]


@pytest.mark.slow
def test_sst2_on_ollama_stores_every_label_probability_and_the_report_reads_them(tmp_path, ollama):
    ollama.add(FakeModel(TAG, reply=reply, distribution=distribution))
    config = _config(tmp_path)
    res = shootout("run", "-c", str(config), "--run-id", "lp", "--no-progress", env_extra={"OLLAMA_HOST": ollama.url})
    assert res.returncode == 0, res.stderr[-3000:]
    rep = shootout("report", "-c", str(config), "--run-id", "lp", "--out", str(tmp_path / "reports"))
    assert rep.returncode == 0, rep.stderr[-3000:]

    # what the server was asked: greedy, the labels' JSON schema as format, logprobs with the top 20
    asked = _scorings(ollama)
    assert len(asked) == 1 + 4 * 2  # the warm-up, then every call
    for body in asked:
        assert body["top_logprobs"] == 20 and body["logprobs"] is True and body["stream"] is False
        assert body["format"] == {"type": "object", "properties": {"label": {"type": "string", "enum": list(LABELS)}},
                                  "required": ["label"], "additionalProperties": False}
        assert body["options"]["temperature"] == 0.0 and body["truncate"] is False and body["shift"] is False

    con = sqlite3.connect(tmp_path / "results.sqlite")
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT * FROM calls ORDER BY position, iteration").fetchall()
    assert len(rows) == 8
    bodies = {b["messages"][-1]["content"]: b for b in asked}
    items = dict(con.execute("SELECT item_id, text FROM items").fetchall())
    for r in rows:
        probs = json.loads(r["label_probs_json"])
        body = bodies[next(m for m in bodies if items[r["item_id"]] in m)]
        assert probs == pytest.approx(expected_probs(body), abs=1e-9)
        assert r["valid"] == 1 and r["label"] == max(probs, key=probs.get) and r["raw_text"] == reply(body)
    with open(tmp_path / "reports" / "lp" / "calibration.csv") as f:
        assert "label probability vs label right,8," in f.read()


@pytest.mark.slow
def test_bare_labels_go_unconstrained_and_a_short_top_list_leaves_labels_unscored(tmp_path, ollama):
    ollama.add(FakeModel(TAG, reply=reply, distribution=distribution))
    config = _config(tmp_path, answer="text", options="    options: {top_logprobs: 1}\n")
    res = shootout("run", "-c", str(config), "--run-id", "lp", "--no-progress", env_extra={"OLLAMA_HOST": ollama.url})
    assert res.returncode == 0, res.stderr[-3000:]
    assert all("format" not in b and b["top_logprobs"] == 1 for b in _scorings(ollama))
    rows = sqlite3.connect(tmp_path / "results.sqlite").execute(
        "SELECT valid, label, label_probs_json FROM calls").fetchall()
    for valid, label, probs in rows:
        # the top 1 is the model's likeliest token, the label it answered; the other label is not
        # listed: it has no probability (null), never a guess
        probs = json.loads(probs)
        scored = {k for k, v in probs.items() if v is not None}
        assert valid == 1 and probs[label] == 1.0 and scored == {label}


@pytest.mark.slow
def test_what_the_server_refuses_and_an_old_server(tmp_path, ollama):
    ollama.add(FakeModel(TAG, reply=reply, distribution=distribution))
    chat = {"model": TAG, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    r = httpx.post(ollama.url + "/api/chat", json={**chat, "logprobs": True, "top_logprobs": 21})
    assert (r.status_code, r.json()) == (400, {"error": "top_logprobs must be between 0 and 20"})
    r = httpx.post(ollama.url + "/api/chat", json={**chat, "logprobs": "yes"})
    assert r.status_code == 400 and "ChatRequest.logprobs of type bool" in r.json()["error"]
    r = httpx.post(ollama.url + "/api/chat", json={**chat, "logprobs": True})  # no top_logprobs: the tokens only
    assert [set(e) for e in r.json()["logprobs"]] == [{"token", "logprob", "bytes"}]
    # options.top_logprobs over Ollama's limit is refused by validate, before any call
    config = _config(tmp_path, options="    options: {top_logprobs: 21}\n")
    res = shootout("validate", "-c", str(config))
    assert res.returncode == 2 and "models[0].options.top_logprobs" in res.stderr and "Traceback" not in res.stderr
    # a server before 0.12.11 ignores the fields: the run stops at the warm-up with one clear message
    ollama.version = "0.12.6"
    config.write_text(config.read_text().replace("top_logprobs: 21", "top_logprobs: 20"))
    res = shootout("run", "-c", str(config), "--no-progress", env_extra={"OLLAMA_HOST": ollama.url})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    said = " ".join(res.stderr.split())
    assert "Ollama 0.12.6 at" in said and "answered a label scoring without log-probabilities" in said
    assert "upgrade Ollama to 0.12.11 or later" in said


@pytest.mark.live
def test_live_ollama_scores_labels():
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        pytest.skip("no OLLAMA_HOST")
    from benchmark.backends.ollama_backend import OllamaBackend
    from benchmark.tasks.base import Choices

    tag = os.environ.get("SHOOTOUT_LIVE_TAG", TAG)
    b = OllamaBackend(tag, host=host)
    try:
        b.load()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no model {tag} at {host}: {exc}")
    choices = Choices(prefix='{"label": "', continuations={k: f'{k}"}}' for k in LABELS})
    msgs = [{"role": "system", "content": "Say whether the sentence is negative or positive, as JSON."},
            {"role": "user", "content": "a wonderful, moving film"}]
    s = b.score_choices(msgs, choices)
    assert s.probs and sum(s.probs.values()) == pytest.approx(1.0)
    assert set(s.probs) | set(s.unscored) == set(LABELS)
    assert b.score_choices(msgs, choices).probs == pytest.approx(s.probs, abs=1e-6)  # greedy: the same again
