"""Latency under load for the server backends: streamed calls record the time to the first content token
(a chunk naming only the role does not count), the inter-token gaps and the end-to-end time; the report's
Throughput sheet gives their p50/p90/p99 per model and concurrency level; `run.concurrency: [..]` sweeps
levels and the sheet and its chart mark the knee. Against the OpenAI-compatible stand-in, the Ollama
fixture, the scripted fake (the sweep's bookkeeping) and real `llama_cpp.server` processes (slow).

The only timing assertions are lower bounds the stand-in's own sleeps guarantee (a server that waits
0.3 s before its first token cannot be timed faster than that), never how fast this machine is."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import loopback_server, shootout
from tests.ollama_fixture import ollama  # noqa: F401  (a fixture)
from tests.openai_standin import StandIn, make_handler

MESSAGES = [{"role": "user", "content": "Rate: Acme's orders rose 20%."}]


def test_a_streamed_call_times_its_first_content_chunk_not_the_chunk_that_names_the_role():
    from benchmark.backends.openai_compat import OpenAICompatBackend

    standin = StandIn(role_delay_s=0.3, token_delay_s=0.005)
    with loopback_server(make_handler(standin)) as url:
        plain = OpenAICompatBackend(url + "/v1", "standin", backoff=0.01)
        streamed = OpenAICompatBackend(url + "/v1", "standin", backoff=0.01, stream=True)
        for b in (plain, streamed):
            b.load()
        a = plain.chat(MESSAGES, max_tokens=96)
        r = streamed.chat(MESSAGES, max_tokens=96)
    assert standin.bodies[1]["stream"] is True and standin.bodies[1]["stream_options"] == {"include_usage": True}
    assert r.text == a.text and r.completion_tokens == a.completion_tokens == 33  # the same reply, counted the same
    assert (a.ttft_seconds, a.itl_seconds, a.itl_gaps, a.e2e_seconds) == (None, None, [], None)
    # the role chunk came at once, the first content 0.3 s later: TTFT is at least that
    assert r.ttft_seconds >= 0.3
    assert len(r.itl_gaps) == r.completion_tokens - 1 and r.itl_seconds == pytest.approx(np.mean(r.itl_gaps))
    assert r.e2e_seconds >= r.ttft_seconds + sum(r.itl_gaps) - 1e-9


@pytest.mark.slow
def test_a_stream_broken_off_by_the_server_is_aborted_and_one_cut_short_is_a_failed_call():
    """[DONE] without a finish_reason (llama-cpp-python's server interrupting a call) is an aborted reply;
    a stream that simply ends is a cut answer: retried, then a failed call."""
    from benchmark.backends.base import CallFailed
    from benchmark.backends.openai_compat import OpenAICompatBackend

    for ending, outcome in ((b"data: [DONE]\n\n", "aborted"), (b"", "cut")):
        class Broken(make_handler(StandIn())):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for piece in ('{"role": "assistant", "content": ""}', '{"content": "{\\"label"}'):
                    self.wfile.write(b'data: {"choices": [{"index": 0, "delta": ' + piece.encode() + b'}]}\n\n')
                self.wfile.write(ending)

        with loopback_server(Broken) as url:
            b = OpenAICompatBackend(url + "/v1", "standin", stream=True, retries=1, backoff=0.01)
            b.load()
            if outcome == "aborted":
                r = b.chat(MESSAGES, max_tokens=96)
                assert (r.finish_reason, r.text, len(r.itl_gaps)) == ("aborted", '{"label', 0)
            else:
                with pytest.raises(CallFailed) as err:
                    b.chat(MESSAGES, max_tokens=96)
                assert (err.value.kind, err.value.attempts) == ("cut", 2)
                assert "a stream that ended before its last chunk (2 chunks, no finish_reason)" in err.value.message


def test_a_server_that_ignores_stream_is_read_as_one_answer_without_timings():
    from benchmark.backends.openai_compat import OpenAICompatBackend

    standin = StandIn()
    handler = make_handler(standin)
    original = handler.do_POST

    def no_stream(self):  # a server that answers one JSON object whatever "stream" says
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["stream"] = False
        data = json.dumps(body).encode()
        self.headers.replace_header("Content-Length", str(len(data)))
        import io

        self.rfile = io.BytesIO(data)
        original(self)

    handler.do_POST = no_stream
    with loopback_server(handler) as url:
        b = OpenAICompatBackend(url + "/v1", "standin", stream=True)
        b.load()
        r = b.chat(MESSAGES, max_tokens=96)
    assert r.completion_tokens == 33 and r.ttft_seconds is None and r.itl_gaps == []


def test_ollama_streams_one_line_per_token_and_the_last_line_carries_the_counts(ollama):
    from benchmark.backends.ollama_backend import OllamaBackend
    from benchmark.tasks.sentiment import SENTIMENT
    from benchmark.tasks.sentiment.news import load_snapshot
    from tests.ollama_fixture import FakeModel

    ollama.add(FakeModel("gemma3:270m"))
    messages = SENTIMENT.messages(load_snapshot()[0].to_item(), "few_shot")
    plain = OllamaBackend("gemma3:270m", host=ollama.url)
    plain.load()
    a = plain.chat(messages, schema=SENTIMENT.constraint().schema, max_tokens=96)
    ollama.token_delay_s = 0.01
    streamed = OllamaBackend("gemma3:270m", host=ollama.url, stream=True)
    streamed.load()
    r = streamed.chat(messages, schema=SENTIMENT.constraint().schema, max_tokens=96)
    sent = [b for b in ollama.chats() if b.get("messages") and not b.get("_debug_render_only")]
    assert [b["stream"] for b in sent] == [False, True]
    assert (r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens) == \
        (a.text, a.finish_reason, a.prompt_tokens, a.completion_tokens)
    assert r.gen_seconds == a.gen_seconds  # the metrics of the last line, as Ollama reports them
    assert len(r.itl_gaps) == r.completion_tokens - 1 and r.ttft_seconds is not None
    assert r.e2e_seconds >= r.ttft_seconds + sum(r.itl_gaps) - 1e-9


def _config(folder: Path, models: str, *, articles: int = 6, iterations: int = 2, run_extra: str = "") -> Path:
    path = folder / "config.yaml"
    path.write_text(f"task: sentiment\nnews: {{source: snapshot, max_articles: {articles}}}\n"
                    f"run: {{iterations: {iterations}, temperature: 0.0, num_predict: 96, seed: 7, "
                    f"database: results.sqlite{run_extra}}}\nmodels:\n{models}")
    return path


def _calls(db: Path) -> pd.DataFrame:
    with sqlite3.connect(db) as con:
        return pd.read_sql_query("SELECT * FROM calls ORDER BY id", con)


@pytest.mark.slow
def test_streamed_timings_are_stored_per_call_and_the_sheet_gives_their_percentiles(tmp_path):
    """The run stores each call's TTFT, gaps and end-to-end time; the Throughput sheet's percentiles are
    numpy's (linear) over those stored values: TTFT and e2e over calls, ITL over every gap pooled."""
    standin = StandIn(token_delay_s=0.002)
    with loopback_server(make_handler(standin)) as url:
        models = (f"  - {{name: oa, backend: openai, base_url: '{url}/v1', model: standin, family: f, quant: Q4_K_M, "
                  "options: {stream: true}}\n")
        res = shootout("run", "-c", str(_config(tmp_path, models)), "--no-progress")
    assert res.returncode == 0, res.stderr
    calls = _calls(tmp_path / "results.sqlite")
    assert len(calls) == 12 and calls["ttft_seconds"].notna().all() and (calls["concurrency"] == 1).all()
    gaps = [json.loads(g) for g in calls["itl_json"]]
    assert all(len(g) == n - 1 for g, n in zip(gaps, calls["completion_tokens"]))
    assert np.allclose([np.mean(g) / 1000 for g in gaps], calls["itl_seconds"], atol=1e-6)  # stored in ms
    rep = shootout("report", "--db", str(tmp_path / "results.sqlite"), "--out", str(tmp_path / "out"))
    assert rep.returncode == 0, rep.stderr
    table = pd.read_csv(next((tmp_path / "out").glob("*/latency.csv")))
    row = table.iloc[0]
    assert (row["model"], row["concurrency"], row["calls"], row["streamed_calls"]) == ("oa", 1, 12, 12)
    pooled = np.array([x for g in gaps for x in g]) / 1000
    for q in (50, 90, 99):
        assert row[f"ttft_p{q}"] == pytest.approx(np.percentile(calls["ttft_seconds"], q))
        assert row[f"itl_p{q}"] == pytest.approx(np.percentile(pooled, q), abs=1e-6)
        assert row[f"e2e_p{q}"] == pytest.approx(np.percentile(calls["e2e_seconds"], q))
    sheets = pd.read_excel(next((tmp_path / "out").glob("*.xlsx")), sheet_name=None, header=None)
    note = str(sheets["Throughput"].iloc[0, 0])
    assert "Hyndman & Fan type 7" in note and "does not count" in note and "pooled" in note


# --------------------------------------------------------------------------- the sweep (the scripted fake)

def test_a_concurrency_sweep_runs_each_level_over_its_own_block_and_a_resume_keeps_them(tmp_path):
    from benchmark.config import load_config
    from benchmark.run.runner import Runner, iteration_order
    from benchmark.run.scheduler import sweep_level
    from benchmark.store import Store
    from core.errors import ShootoutError
    from tests.fake_configs import classify_config

    def config(options: str) -> Path:
        models = ("  - {name: m, backend: fake, family: f, quant: Q4_K_M, endpoints: [fake://a, fake://b], "
                  f"options: {{seconds_per_token: 0.002, {options}}}}}\n")
        return classify_config(tmp_path, models=models, n_items=8, iterations=3, run_extra="  concurrency: [4, 1, 2]\n")

    def run(path: Path):
        with Store(tmp_path / "results.sqlite") as store:
            return Runner(load_config(path), store, run_id="s", progress=False).run()

    with pytest.raises(ShootoutError):  # both endpoints stop answering part-way (the warm-ups count)
        run(config("down_after: 6"))
    first = _calls(tmp_path / "results.sqlite")
    assert 0 < len(first) < 24
    run(config(""))
    calls = _calls(tmp_path / "results.sqlite")
    assert len(calls) == 24
    with Store(tmp_path / "results.sqlite") as store:
        ids = [i.id for i in store.items("s")]
    order = {(it, iid): pos for it in range(3) for pos, iid in enumerate(iteration_order(ids, 7, it))}
    planned = [sweep_level([1, 2, 4], it * 8 + order[(it, iid)], 24)
               for it, iid in zip(calls["iteration"], calls["item_id"])]
    assert calls["concurrency"].tolist() == planned  # resumed calls kept the level the plan gave them
    assert sorted(calls["concurrency"].value_counts().to_dict().items()) == [(1, 8), (2, 8), (4, 8)]
    assert (calls["in_flight"] <= calls["concurrency"]).all()


def test_the_knee_is_the_level_of_highest_requests_per_second_per_median_second():
    from benchmark.stats.throughput import mark_knee

    t = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 2 + ["c"], "concurrency": [1, 2, 4, 8, 1, 2, 1],
                      "requests_per_s": [1.0, 1.9, 2.0, 2.0, 1.0, 2.0, 1.0], "e2e_p50": [1.0, 1.05, 2.0, 4.0, 1.0, 2.0, 1.0]})
    out = mark_knee(t)
    assert out.loc[out["knee"], ["model", "concurrency"]].values.tolist() == [["a", 2], ["b", 1]]  # b: a tie, the lower
    assert out.loc[0:3, "power"].round(3).tolist() == [1.0, 1.81, 1.0, 0.5]


@pytest.mark.slow
def test_a_sweep_report_has_one_row_per_level_a_knee_and_the_chart(tmp_path):
    from tests.fake_configs import classify_config

    models = ("  - {name: m, backend: fake, family: f, quant: Q4_K_M, endpoints: [fake://a, fake://b], "
              "options: {seconds_per_token: 0.002}}\n")
    config = classify_config(tmp_path, models=models, n_items=8, iterations=3, run_extra="  concurrency: [1, 2, 4]\n")
    res = shootout("run", "-c", str(config), "--no-progress")
    assert res.returncode == 0, res.stderr
    rep = shootout("report", "--db", str(tmp_path / "results.sqlite"), "--out", str(tmp_path / "out"))
    assert rep.returncode == 0, rep.stderr
    charts = shootout("heatmaps", "--db", str(tmp_path / "results.sqlite"), "--out", str(tmp_path / "charts"))
    assert charts.returncode == 0, charts.stderr
    table = pd.read_csv(next((tmp_path / "out").glob("*/latency.csv")))
    assert table["concurrency"].tolist() == [1, 2, 4] and table["calls"].tolist() == [8, 8, 8]
    assert table["knee"].sum() == 1
    best = table.loc[(table["requests_per_s"] / table["e2e_p50"]).idxmax(), "concurrency"]
    assert table.loc[table["knee"], "concurrency"].item() == best
    assert table["streamed_calls"].eq(0).all() and table["ttft_p50"].isna().all()  # the fake streams nothing
    assert list((tmp_path / "charts").rglob("throughput_latency.png"))


# --------------------------------------------------------------------------- real llama_cpp.server processes

@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_sweep_against_real_llama_cpp_servers_gives_ttft_and_itl_percentiles_and_the_chart(tiny_gguf, tmp_path):
    """Two `python -m llama_cpp.server` processes of the tiny model (one thread each), streamed calls at
    1, 2 and 4 in flight per server: every call stored once with its timings, the Throughput sheet's
    percentiles per level recomputed from the stored values, the knee marked, the chart drawn."""
    import os
    import shutil
    import signal

    import subprocess
    import sys

    from tests.test_endpoints import SST2, _free_port, _wait_ready

    def start(port: int) -> subprocess.Popen:  # calls queue rather than break off the one in flight
        return subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1",
                                 "--n_ctx", "1024", "--model_alias", "tiny", "--interrupt_requests", "False"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)

    ports = [_free_port() for _ in range(2)]
    procs = [start(p) for p in ports]
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    try:
        for u, p in zip(urls, procs):
            _wait_ready(u, p)
        (tmp_path / "data").mkdir()
        for f in ("train.tsv", "dev.tsv"):
            shutil.copy(SST2 / "data" / f, tmp_path / "data" / f)
        text = (SST2 / "config.yaml").read_text()
        text = text.replace("    evaluate: validation", "    evaluate: validation\n    max_items: 8")
        text = text.replace("  iterations: 3\n  temperature: 0.7", "  iterations: 3\n  concurrency: [1, 2, 4]\n"
                                                                     "  temperature: 0.0")
        models = ("models:\n  - name: tiny\n    backend: openai\n    model: tiny\n    endpoints:\n"
                  + "".join(f"      - {u}\n" for u in urls)
                  + "    family: tiny\n    quant: F16\n    prompt_style: zero_shot\n    options: {stream: true}\n")
        (tmp_path / "config.yaml").write_text(text[:text.index("models:")] + models + text[text.index("output:"):])
        res = shootout("run", "-c", str(tmp_path / "config.yaml"), "--no-progress")
        assert res.returncode == 0, res.stderr
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    db = tmp_path / "results.sqlite"
    calls = _calls(db)
    assert len(calls) == len(calls[["iteration", "item_id"]].drop_duplicates()) == 24
    assert calls["finish_reason"].isin(["stop", "length"]).all() and calls["e2e_seconds"].notna().all()
    spoke = calls["raw_chars"] > 0  # the tiny model sometimes ends at once: no content, no first token
    assert calls.loc[spoke, "ttft_seconds"].notna().all() and calls.loc[~spoke, "ttft_seconds"].isna().all()
    assert sorted(calls["concurrency"].value_counts().to_dict().items()) == [(1, 8), (2, 8), (4, 8)]
    assert set(calls["endpoint"]) == set(urls) and (calls["in_flight"] <= calls["concurrency"]).all()
    rep = shootout("report", "--db", str(db), "--out", str(tmp_path / "out"))
    assert rep.returncode == 0, rep.stderr
    charts = shootout("heatmaps", "--db", str(db), "--out", str(tmp_path / "charts"))
    assert charts.returncode == 0, charts.stderr
    table = pd.read_csv(next((tmp_path / "out").glob("*/latency.csv")))
    assert table["concurrency"].tolist() == [1, 2, 4] and table["streamed_calls"].tolist() == [8, 8, 8]
    for row in table.itertuples(index=False):
        level = calls[calls["concurrency"] == row.concurrency]
        gaps = np.array([x for g in level["itl_json"].dropna() for x in json.loads(g)]) / 1000
        for q in (50, 90, 99):
            assert getattr(row, f"ttft_p{q}") == pytest.approx(np.percentile(level["ttft_seconds"].dropna(), q))
            assert getattr(row, f"e2e_p{q}") == pytest.approx(np.percentile(level["e2e_seconds"], q))
            if len(gaps):
                assert getattr(row, f"itl_p{q}") == pytest.approx(np.percentile(gaps, q), abs=1e-6)
    assert table["knee"].sum() == 1
    png = next((tmp_path / "charts").rglob("throughput_latency.png"))
    keep = os.environ.get("SHOOTOUT_KEEP_SWEEP")  # a folder to copy the run's figures to, to look at them
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, keep)
        table.to_csv(Path(keep) / "latency.csv", index=False)
