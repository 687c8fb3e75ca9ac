"""Fine-tune stage: dataset builders on fixture files, a resumable labelling run, EOS/pad checks,
and a tiny Llama model fine-tuned on CPU (transformers + PEFT + TRL) whose merged folder exports."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from benchmark.tasks.sentiment import ZERO_SHOT_SYSTEM_PROMPT
from tests.conftest import ROOT, shootout, start_shootout, write_config
from tests.ollama_fixture import FakeModel, ollama  # noqa: F401 (fixture)

TWEETS = (
    "tweet_id,airline_sentiment,airline_sentiment_confidence,airline,text\n"
    '1,positive,1.0,Virgin America,"@VirginAmerica great flight, thanks!"\n'
    "2,negative,0.6842,United,@united lost my bag &amp; no one answers <b>again</b>\n"
    "3,neutral,0.35,Delta,@delta what time does the lounge open\n"
    "4,positive,1.0,Virgin America,\"@VirginAmerica  great flight,   thanks!\"\n"  # duplicate of 1 once cleaned
)
PHRASEBANK = "Operating profit rose to EUR 13.1 mn .@positive\nThe café chain's sales fell 5 % .@negative\n"


def _reply(reasoning, sentiment, confidence):
    return json.dumps({"reasoning": reasoning, "sentiment": sentiment, "confidence": confidence})


@pytest.mark.slow
def test_builders_produce_the_expected_sharegpt_records(tmp_path):
    (tmp_path / "Tweets.csv").write_text(TWEETS, encoding="utf-8")
    (tmp_path / "Sentences_75Agree.txt").write_bytes(PHRASEBANK.encode("latin-1"))
    steps = [("data", "tweets", "Tweets.csv", "--out", "tweets.jsonl"),
             ("data", "phrasebank", "Sentences_75Agree.txt", "--out", "pb.jsonl"),
             ("data", "join", "tweets.jsonl", "pb.jsonl", "--out", "train.jsonl"),
             ("data", "export", "train.jsonl", "--format", "sharegpt", "--out", "train.sharegpt.jsonl"),
             ("data", "export", "train.jsonl", "--format", "alpaca", "--out", "train.alpaca.jsonl")]
    outs = []
    for args in steps:
        r = shootout(*args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert "kept 5 of 6 (0 invalid, 1 duplicates)" in outs[2]
    got = [json.loads(x) for x in (tmp_path / "train.sharegpt.jsonl").read_text().splitlines()]
    expected = [
        ("@VirginAmerica great flight, thanks!", _reply("The tweet reads as positive.", 0.6, 1.0)),
        ("@united lost my bag & no one answers again", _reply("The tweet reads as negative.", -0.6, 0.684)),
        ("@delta what time does the lounge open", _reply("The tweet reads as neutral.", 0.0, 0.35)),
        ("Operating profit rose to EUR 13.1 mn .", _reply("The sentence reads as positive.", 0.6, 0.75)),
        ("The café chain's sales fell 5 % .", _reply("The sentence reads as negative.", -0.6, 0.75)),
    ]
    assert [[(t["from"], t["value"]) for t in g["conversations"]] for g in got] == [
        [("system", ZERO_SHOT_SYSTEM_PROMPT), ("human", text), ("gpt", reply)] for text, reply in expected]
    alpaca = [json.loads(x) for x in (tmp_path / "train.alpaca.jsonl").read_text().splitlines()]
    assert alpaca[3] == {"instruction": ZERO_SHOT_SYSTEM_PROMPT, "input": expected[3][0], "output": expected[3][1]}


@pytest.mark.slow
def test_join_drops_invalid_records_with_a_reason(tmp_path):
    good = {"id": "a", "text": "Acme rose.", "reasoning": "Up.", "sentiment": 0.5, "confidence": 0.9, "source": "x"}
    bad = {**good, "id": "b", "text": "Acme fell.", "sentiment": 3.0}
    (tmp_path / "r.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    r = shootout("data", "join", "r.jsonl", "--out", "j.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kept 1 of 2 (1 invalid" in r.stdout and "sentiment" in r.stdout


def test_bad_builder_input_is_one_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    r = shootout("data", "tweets", "x.csv", cwd=tmp_path)
    assert r.returncode == 2 and "expected the columns" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_labelling_killed_midway_resumes_without_relabelling(tmp_path, embedded_gguf):
    config = write_config(tmp_path, embedded_gguf, models=[("teacher", "few_shot")], articles=4)
    # one engine thread: on a shared 2-core machine two spin against the other processes (measured
    # there: two few-shot labels in 12 s on one thread, 35 to 40 s on two)
    config.write_text(config.read_text().replace("options: {chat_template: gemma}",
                                                 "options: {chat_template: gemma, n_threads: 1}"))
    out = tmp_path / "labelled.jsonl"
    proc = start_shootout("data", "label", "-c", str(config), "-m", "teacher", "--out", str(out), "--no-progress")
    deadline = time.time() + 300
    while time.time() < deadline and (not out.is_file() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert 2 <= len(first) < 4
    r = shootout("data", "label", "-c", str(config), "-m", "teacher", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"{4 - len(first)} labelled now, {len(first)} already there" in r.stdout
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    ids = [x["id"] for x in recs]
    assert len(ids) == len(set(ids)) == 4 and ids[:len(first)] == first
    assert all(-1 <= x["answer"]["sentiment"] <= 1 and x["source"] == "labelled:teacher" for x in recs)


@pytest.mark.slow
def test_labelling_retries_invalid_replies_and_rejects_what_stays_invalid(tmp_path, ollama):  # noqa: F811
    """`data label` against an Ollama server (tests/ollama_fixture.py): the first item is answered
    at once, the second only on its first retry, the third never (three calls with --retries 2):
    it goes to <out>.rejected.jsonl with its last reply and the reason."""
    from benchmark.tasks.sentiment.news import load_snapshot

    first, second, third = [a.to_item() for a in load_snapshot()[:3]]
    good = {first.id: _reply("Orders rose.", 0.6, 0.9), second.id: _reply("Sales are barred.", -0.7, 0.8)}

    def reply(body):
        if "messages" not in body:  # a raw /api/generate: the backend counting a shared prompt start's tokens
            return "ok"
        article = body["messages"][-1]["content"]
        attempt = body["options"]["seed"] - 7  # label_items asks with seed run.seed + attempt
        if first.text[:60] in article:
            return good[first.id]
        if second.text[:60] in article:
            return _reply("Sales are barred.", 4.0, 0.8) if attempt == 0 else good[second.id]  # 4 is out of range
        return f"I cannot rate this (attempt {attempt})"

    ollama.add(FakeModel("teacher:big", reply=reply))
    config = tmp_path / "config.yaml"
    config.write_text("task: sentiment\nnews:\n  source: snapshot\n  max_articles: 3\nrun:\n  seed: 7\nmodels:\n"
                      "  - {name: teacher, backend: ollama, tag: 'teacher:big', family: teacher, quant: Q8_0}\n")
    out = tmp_path / "labelled.jsonl"
    r = shootout("data", "label", "-c", str(config), "-m", "teacher", "--out", str(out), "--retries", "2",
                 "--no-progress", env_extra={"OLLAMA_HOST": ollama.url})
    assert r.returncode == 0, r.stderr
    assert "2 labelled now, 0 already there, 1 rejected after retries (6 calls)" in " ".join(r.stdout.split())
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in recs] == [f"news-{first.id}", f"news-{second.id}"]
    assert [json.dumps(x["answer"]) for x in recs] == [good[first.id], good[second.id]]  # the retry's answer
    rejected = [json.loads(x) for x in (tmp_path / "labelled.rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1 and rejected[0]["id"] == f"news-{third.id}"
    assert rejected[0]["reply"] == "I cannot rate this (attempt 2)" and "JSON" in rejected[0]["error"]
    asked = [(b["options"]["seed"], b["options"]["temperature"]) for b in ollama.chats()
             if b.get("messages") and not b.get("_debug_render_only")]
    assert asked == [(7, 0.0), (7, 0.0), (8, 0.7), (7, 0.0), (8, 0.7), (9, 0.7)]  # retries are sampled


# ------------------------------------------------------------------ training on a tiny model

# torch on one thread for the tiny model: on this project's shared 2-core machines two threads spin
# against each other (a tiny-model step: 0.11 s on one thread, 0.5 to 3.8 s on two)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}

def _synthetic(n: int, seed: int = 0) -> list[dict]:
    from finetune.data import synthetic_sharegpt

    return synthetic_sharegpt(n, seed)


@pytest.fixture(scope="module")
def tiny_base(tiny_hf_model) -> Path:
    return tiny_hf_model  # the session's tiny model (tests/conftest.py), shared with the export tests


@pytest.mark.slow
def test_every_example_ends_with_eos_and_pad_differs(tiny_base):
    from transformers import AutoTokenizer

    from finetune.data import ROLE_FROM_SHAREGPT
    from finetune.train import check_examples, ensure_pad, tokenize_conversations
    from core.errors import ShootoutError

    tok = AutoTokenizer.from_pretrained(tiny_base)
    tok.pad_token = tok.eos_token  # the usual mistake: pad = EOS
    assert "set to existing '<pad>'" == ensure_pad(tok)
    assert tok.pad_token_id != tok.eos_token_id
    convs = [[{"role": ROLE_FROM_SHAREGPT[t["from"]], "content": t["value"]} for t in r["conversations"]]
             for r in _synthetic(6)]
    examples, counts = tokenize_conversations(tok, convs, max_len=512)
    assert counts["examples"] == 6 and counts["eos_appended"] == 6  # the template ends turns with <|eot_id|> only
    for e in examples:
        assert e["input_ids"][-1] == tok.eos_token_id
        answer = tok.decode([t for t, lab in zip(e["input_ids"], e["labels"]) if lab != -100])
        assert answer.startswith('{"reasoning"') and answer.endswith("<|eot_id|></s>")
    assert check_examples(examples, tok)["all_end_with_eos"]
    examples[0]["input_ids"] = examples[0]["input_ids"][:-1]
    with pytest.raises(ShootoutError, match="training data check failed"):
        check_examples(examples, tok)


@pytest.mark.slow
def test_tiny_model_finetunes_on_cpu_and_its_merged_folder_exports(tiny_base, tmp_path):
    data = tmp_path / "train.sharegpt.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _synthetic(64)))
    out = tmp_path / "ft"
    r = shootout("finetune", str(tiny_base), str(data), "--out", str(out), "--max-steps", "40", "--lr", "3e-3",
                 "--batch-size", "8", "--eval-fraction", "0.25", "--eval-steps", "20", "--lora-r", "8",
                 "--engine", "transformers", "--max-seq-len", "512", "--export", "--quants", "Q8_0", timeout=900,
                 env_extra=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "training_report.json").read_text())
    assert rep["engine"] == "transformers" and rep["global_steps"] == 40
    assert rep["data"]["train"] == 48 and rep["data"]["eval"] == 16
    assert rep["checks"]["all_end_with_eos"] and rep["checks"]["pad_differs_from_eos"]
    assert len(rep["train_loss_per_step"]) == 40
    assert rep["final_eval_loss"] < 0.5 * rep["initial_eval_loss"]  # it learned the task
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = out / "merged"
    cfg = json.loads((merged / "config.json").read_text())
    assert cfg["dtype"] in ("float16", "bfloat16") or cfg.get("torch_dtype") in ("float16", "bfloat16")
    # --export handed the merged folder to the export stage
    m = json.loads((out / "gguf" / "ft.manifest.json").read_text())
    assert m["source"]["kind"] == "hf" and list(m["files"]) == ["F16", "Q8_0"]
    assert m["verification"]["parity"]["passed"] and m["verification"]["parity"]["top1_agreement"] >= 0.99


@pytest.fixture(scope="module")
def seeded_runs(tiny_base, tmp_path_factory) -> dict[str, dict]:
    """Three short fine-tunes on 16 short examples and one too long for --max-seq-len: seeds 7, 7, 8."""
    tmp = tmp_path_factory.mktemp("seeds")
    rows = _synthetic(16)
    long = json.loads(json.dumps(rows[0]))
    long["conversations"][1]["value"] = " ".join(["Acme shares rose after strong results and raised guidance."] * 40)
    rows.insert(5, long)
    data = tmp / "train.sharegpt.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reports = {}
    for run, seed in (("a", 7), ("b", 7), ("c", 8)):
        r = shootout("finetune", str(tiny_base), str(data), "--out", str(tmp / run), "--max-steps", "4",
                     "--lr", "3e-3", "--batch-size", "4", "--eval-fraction", "0", "--lora-r", "4",
                     "--engine", "transformers", "--max-seq-len", "256", "--seed", str(seed), timeout=900,
                     env_extra=ONE_THREAD)
        assert r.returncode == 0, r.stderr
        reports[run] = {"report": json.loads((tmp / run / "training_report.json").read_text()), "stderr": r.stderr}
    return reports


@pytest.mark.slow
def test_one_seed_gives_the_same_losses_and_another_seed_different_ones(seeded_runs):
    a, b, c = (seeded_runs[k]["report"] for k in ("a", "b", "c"))
    assert a["seeds"] == b["seeds"] == {"python": 7, "numpy": 7, "torch": 7} and c["seeds"]["torch"] == 8
    losses = {k: [x["loss"] for x in seeded_runs[k]["report"]["train_loss_per_step"]] for k in seeded_runs}
    assert len(losses["a"]) == 4 and all(x > 0 for x in losses["a"])
    assert losses["a"] == losses["b"]  # two processes, one seed: the same run
    assert all(x != y for x, y in zip(losses["a"], losses["c"]))  # another data order, LoRA init and dropout


@pytest.mark.slow
def test_examples_longer_than_max_seq_len_are_dropped_and_the_rest_trained(seeded_runs):
    rep = seeded_runs["a"]["report"]
    assert rep["data"]["dropped_too_long"] == 1 and rep["data"]["examples"] == 16
    assert rep["data"]["train"] == 16 and rep["data"]["eval"] == 0
    assert rep["global_steps"] == 4  # 16 examples, batch 4: one epoch of the kept examples
    assert "16 training and 0 eval examples (1 too long, dropped)" in " ".join(seeded_runs["a"]["stderr"].split())


@pytest.mark.slow
def test_unsloth_is_refused_without_cuda(tiny_base, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _synthetic(4)))
    r = shootout("finetune", str(tiny_base), str(data), "--engine", "unsloth", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "CUDA" in r.stderr and "--engine transformers" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_learning_curve_benchmarks_every_checkpoint_on_train_and_held_out_items(tiny_base, tmp_path):
    """The stance-study workflow on the spam example: a checkpoint every 10 steps, each exported and
    asked about the training and the held-out split; the report plots both curves."""
    import sqlite3

    import pandas as pd

    src = ROOT / "examples" / "spam"
    cfg = tmp_path / "spam"
    (cfg / "data").mkdir(parents=True)
    for f in ("train.csv", "eval.csv"):
        (cfg / "data" / f).write_bytes((src / "data" / f).read_bytes())
    (cfg / "config.yaml").write_text((src / "config.yaml").read_text().replace(
        "    evaluate: test", "    evaluate: test\n    max_items: 12"))
    out = tmp_path / "lc"
    r = shootout("learning-curve", str(tiny_base), "-c", str(cfg / "config.yaml"), "--out", str(out),
                 "--every", "10", "--total", "20", "--quant", "Q8_0", "--lr", "3e-3", "--batch-size", "8",
                 "--splits", "train,test", "--no-progress", timeout=900, env_extra=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "train" / "training_report.json").read_text())
    assert [c["step"] for c in rep["checkpoints"]] == [10, 20]
    losses = [x["loss"] for x in rep["train_loss_per_step"]]
    assert sum(losses[-5:]) < sum(losses[:5])  # it learned something
    con = sqlite3.connect(out / "results.sqlite")
    run_id = con.execute("SELECT run_id FROM runs").fetchone()[0]
    splits = dict(con.execute("SELECT split, COUNT(*) FROM items GROUP BY split").fetchall())
    assert splits == {"train": 12, "test": 12}  # max_items caps each evaluated split
    assert {m for (m,) in con.execute("SELECT DISTINCT model FROM calls")} == {"ckpt-10", "ckpt-20"}
    curve = pd.read_csv(out / "reports" / run_id / "learning_curve.csv")
    assert len(curve) == 4 and set(curve["split"]) == {"train", "test"}
    calls = pd.read_sql_query("SELECT c.model, c.valid, c.label, i.target_label, i.split FROM calls c "
                              "JOIN items i USING (item_id)", con)
    for row in curve.itertuples():
        c = calls[(calls.model == f"ckpt-{int(row.checkpoint)}") & (calls.split == row.split)]
        assert row.accuracy == pytest.approx(((c.valid == 1) & (c.label == c.target_label)).mean())
    assert (out / "heatmaps" / run_id / "learning_curve.png").stat().st_size > 10_000
