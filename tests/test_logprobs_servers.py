"""Label probabilities from a real OpenAI-compatible server: `python -m llama_cpp.server` (one thread)
serving the embedded Gemma 3 270M on 127.0.0.1, asked by `backend: openai` with task.decoding:
logprob. The SST-2 example runs to a report with every label's probability stored for every call,
and the stored probabilities are checked against the server's own log-probabilities, asked
separately. (mlx_lm.server: tests/test_mlx.py; Ollama: tests/test_logprobs_ollama.py.)"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, shootout
from tests.mlx_server import free_port, post

pytestmark = pytest.mark.slow
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def llama_server(embedded_gguf, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:  # a file: a full pipe would block the server
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf), "--host",
                                 "127.0.0.1", "--port", str(port), "--chat_format", "gemma", "--n_ctx", "2048",
                                 "--n_threads", "1", "--n_threads_batch", "1", "--model_alias", "gemma3-270m"],
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(base + "/models", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("llama_cpp.server did not start:\n" + log.read_text()[-2000:])
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def example_config(tmp_path, example: str, models: str, *, items: int = 3, iterations: int = 2) -> "Path":  # noqa: F821
    """The example's config in tmp_path (its data copied), in log-probability mode, over its first
    ``items`` evaluation items, with ``models`` instead of its own."""
    text = (EXAMPLES / example / "config.yaml").read_text()
    head, rest = text.split("\nmodels:\n", 1)
    tail = rest[rest.index("\noutput:"):] if "\noutput:" in rest else ""
    head = head.replace("  answer: ", "  decoding: logprob\n  answer: ", 1)
    head = head.replace("    evaluate: ", f"    max_items: {items}\n    evaluate: ", 1)
    head = head.replace("  iterations: 3", f"  iterations: {iterations}")
    head = "\n".join(line for line in head.splitlines() if not line.startswith("compare:")
                     and not line.startswith("  - [") and not line.startswith("report:")
                     and not line.startswith("  price_per_hour"))
    shutil.copytree(EXAMPLES / example / "data", tmp_path / "data")
    path = tmp_path / "config.yaml"
    path.write_text(head + "\nmodels:\n" + models + tail)
    return path


def stored_calls(db) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute("SELECT * FROM calls ORDER BY item_id, iteration").fetchall()
    finally:
        con.close()


def run_to_report(config, tmp_path) -> list[sqlite3.Row]:
    """`shootout run` then `shootout report` on the config; the stored calls."""
    res = shootout("run", "-c", str(config), "--run-id", "lp", "--no-progress", timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rep = shootout("report", "-c", str(config), "--run-id", "lp", "--out", str(tmp_path / "reports"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert list((tmp_path / "reports").glob("*.xlsx")), rep.stdout
    rows = stored_calls(tmp_path / "results.sqlite")
    # the report's calibration reads the stored label probabilities, every call's
    import csv

    with open(tmp_path / "reports" / "lp" / "calibration.csv", newline="") as f:
        calib = list(csv.DictReader(f))
    assert [(c["confidence_from"], int(c["calls"])) for c in calib] == [("label probability vs label right", len(rows))]
    assert float(calib[0]["mean_confidence"]) == pytest.approx(sum(r["confidence"] for r in rows) / len(rows))
    return rows


def assert_every_label_scored(rows, labels):
    assert rows
    for r in rows:
        probs = json.loads(r["label_probs_json"])
        assert r["valid"] == 1 and r["error"] is None, dict(r)
        assert set(probs) == set(labels) and None not in probs.values(), probs
        assert sum(probs.values()) == pytest.approx(1.0)
        assert r["label"] == max(probs, key=probs.get) and r["confidence"] == pytest.approx(probs[r["label"]])
    # nothing sampled: an item's iterations carry the same probabilities
    by_item = {}
    for r in rows:
        by_item.setdefault(r["item_id"], []).append(json.loads(r["label_probs_json"]))
    for item, runs in by_item.items():
        assert len(runs) == 2
        assert runs[0] == pytest.approx(runs[1], abs=1e-6), item


def test_sst2_on_llama_cpp_server_stores_every_label_probability(llama_server, tmp_path):
    models = (f"  - name: gemma-served\n    backend: openai\n    base_url: {llama_server}\n    model: gemma3-270m\n"
              "    family: gemma3-270m\n    quant: Q4_K_M\n    prompt_style: few_shot\n")
    config = example_config(tmp_path, "sst2", models)
    rows = run_to_report(config, tmp_path)
    assert len(rows) == 3 * 2
    assert_every_label_scored(rows, ["negative", "positive"])
    assert {r["backend"] for r in rows} == {"openai"} and all(r["raw_text"] in ('{"label": "negative"}',
                                                                               '{"label": "positive"}') for r in rows)

    # the stored probabilities are the server's own: the same request asked by hand (schema, greedy,
    # top 20), read where the reply's label starts, renormalized over the two labels
    from benchmark.config import load_config
    from benchmark.tasks import task_for

    cfg = load_config(config)
    task = task_for(cfg)
    items = {i.id: i for i in task.load_items(cfg, warn=print)}
    row = rows[0]
    messages = task.messages(items[row["item_id"]], "few_shot")
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["negative", "positive"]}},
              "required": ["label"], "additionalProperties": False}
    status, out = post(llama_server + "/chat/completions", {
        "model": "gemma3-270m", "messages": messages, "temperature": 0, "max_tokens": 40, "logprobs": True,
        "top_logprobs": 20, "response_format": {"type": "json_object", "schema": schema}})
    assert status == 200, out
    content = out["choices"][0]["logprobs"]["content"]
    text, at = "", None
    for j, entry in enumerate(content):
        if text.endswith('"label": "') or text.endswith('"label":"'):
            at = j
            break
        text += entry["token"]
    assert at is not None, text
    alts = {a["token"]: a["logprob"] for a in content[at]["top_logprobs"]}
    assert {"negative", "positive"} <= set(alts), alts
    # every token listed there that begins one label only is a way to write it ("neg", "negative")
    mass = {k: sum(math.exp(v) for t, v in alts.items() if t and k.startswith(t)) for k in ("negative", "positive")}
    expected = {k: m / sum(mass.values()) for k, m in mass.items()}
    assert json.loads(row["label_probs_json"]) == pytest.approx(expected, abs=1e-6)


def test_too_few_alternatives_leave_labels_unscored_and_named(llama_server, tmp_path):
    """top_logprobs: 1 lists only the generated label's token: the other label has no probability
    (stored as null), the call stays valid with the label the server generated."""
    models = (f"  - name: gemma-top1\n    backend: openai\n    base_url: {llama_server}\n    model: gemma3-270m\n"
              "    family: gemma3-270m\n    quant: Q4_K_M\n    prompt_style: few_shot\n"
              "    options: {top_logprobs: 1}\n")
    config = example_config(tmp_path, "sst2", models, items=2, iterations=1)
    res = shootout("run", "-c", str(config), "--run-id", "lp", "--no-progress", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = stored_calls(tmp_path / "results.sqlite")
    assert len(rows) == 2
    for r in rows:
        probs = json.loads(r["label_probs_json"])
        assert r["valid"] == 1 and probs[r["label"]] == 1.0
        assert [k for k, v in probs.items() if v is None] == [k for k in ("negative", "positive") if k != r["label"]]
