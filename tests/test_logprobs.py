"""The probability maths of label scoring on servers (benchmark/backends/logprobs.py): known
log-probabilities in, the exact probabilities out; labels the answer cannot score are named, never
guessed; and what the runner stores for them (null in label_probs_json, the call still valid)."""

from __future__ import annotations

import json
import math

import pytest

from benchmark.backends import logprobs as lp
from benchmark.backends.logprobs import Step, Token
from benchmark.tasks.base import Choices

LN = math.log
JSON = Choices(prefix='{"label": "', continuations={k: f'{k}"}}' for k in ("negative", "neutral", "positive")})
BARE = Choices(prefix="", continuations={"spam": "spam", "ham": "ham"}, terminal=True)


def steps(*tokens) -> list[Step]:
    """Steps from (text, logprob) or (text, logprob, {alternative: logprob})."""
    out = []
    for t in tokens:
        text, logprob, alts = (t + ({},))[:3]
        out.append(Step(Token(text, logprob), tuple(Token(a, v) for a, v in alts.items())))
    return out


def json_reply(label_step, head=('{"', "label", '":', ' "')):
    return steps(*[(h, -0.01) for h in head], label_step, ('"}', -0.001))


def test_labels_parting_at_their_first_token_get_their_tokens_probabilities_over_the_label_tokens():
    alts = {"positive": LN(0.5), "negative": LN(0.2), "neutral": LN(0.1), "The": LN(0.15)}
    s = lp.from_text(json_reply(("positive", LN(0.5), alts)), JSON, listed=4)
    assert s.unscored == {}
    assert s.probs == pytest.approx({"negative": 0.25, "neutral": 0.125, "positive": 0.625}, abs=1e-12)
    # the model's own log-probabilities of the choosing tokens, unnormalized
    assert s.logprobs == pytest.approx({"negative": LN(0.2), "neutral": LN(0.1), "positive": LN(0.5)}, abs=1e-12)
    assert list(s.probs) == ["negative", "neutral", "positive"] and s.best == "positive"


def test_the_generated_token_listed_among_the_alternatives_counts_once():
    # llama-cpp-python adds the generated token to its top list; Ollama lists it when it is in the top
    alts = {"positive": LN(0.6), "negative": LN(0.3), "neutral": LN(0.1)}
    once = lp.from_text(json_reply(("positive", LN(0.6), alts)), JSON, listed=3)
    # not listed (a constrained token below the raw top): the generated token is added
    below = lp.from_text(json_reply(("neutral", LN(0.01), {"positive": LN(0.6), "negative": LN(0.3)})), JSON,
                         listed=2)
    assert once.probs == pytest.approx({"negative": 0.3, "neutral": 0.1, "positive": 0.6}, abs=1e-12)
    assert below.probs == pytest.approx({"negative": 0.3 / 0.91, "neutral": 0.01 / 0.91, "positive": 0.6 / 0.91},
                                        abs=1e-12)


def test_whitespace_the_server_writes_around_json_punctuation_is_found():
    head = ("{", "\n ", ' "', "label", '"', " :", '  "')
    s = lp.from_text(json_reply(("neg", LN(0.4), {"neg": LN(0.4), "positive": LN(0.2), "neu": LN(0.2)}), head),
                     JSON, listed=3)
    assert s.probs == pytest.approx({"negative": 0.5, "neutral": 0.25, "positive": 0.25})


def test_every_listed_spelling_of_a_label_adds_to_it():
    alts = {"negative": LN(0.3), "neg": LN(0.1), "positive": LN(0.4), "pos": LN(0.05), "p": LN(0.05),
            "ne": LN(0.02)}  # "ne" begins two labels: it decides none of them
    s = lp.from_text(json_reply(("positive", LN(0.4), alts)), JSON, listed=6)
    total = 0.3 + 0.1 + 0.4 + 0.05 + 0.05 + 0.02
    assert s.unscored == {"neutral": "parts from the reply at a token it shares with negative; what follows that "
                                     "token is not in the answer"}
    assert s.logprobs["negative"] == pytest.approx(LN(0.4)) and s.logprobs["positive"] == pytest.approx(LN(0.5))
    # renormalized where they part (over every label-continuing token), then over the scored labels
    p_neg, p_pos = 0.4 / total, 0.5 / total
    assert s.probs == pytest.approx({"negative": p_neg / (p_neg + p_pos), "positive": p_pos / (p_neg + p_pos)})


def test_a_label_the_server_did_not_list_is_unscored_and_the_rest_sum_to_one():
    s = lp.from_text(json_reply(("positive", LN(0.7), {"positive": LN(0.7), "negative": LN(0.2), "So": LN(0.05)})),
                     JSON, listed=3)
    assert s.unscored == {"neutral": "not among the 3 alternatives the server listed where it parts from the reply"}
    assert s.probs == pytest.approx({"negative": 0.2 / 0.9, "positive": 0.7 / 0.9})
    assert sum(s.probs.values()) == pytest.approx(1.0)


def test_labels_parting_after_a_shared_token_are_renormalized_at_each_parting():
    ch = Choices(prefix="", continuations={k: k for k in ("very good", "very bad", "fine")})
    # "very" (0.6) or "fine" (0.3) first; after "very", " good" (0.5) or " bad" (0.25) or " much" (0.2)
    reply = steps(("very", LN(0.6), {"very": LN(0.6), "fine": LN(0.3), "ok": LN(0.1)}),
                  (" good", LN(0.5), {" good": LN(0.5), " bad": LN(0.25), " much": LN(0.2)}))
    s = lp.from_text(reply, ch, listed=3)
    assert s.unscored == {}
    held = {"very good": (0.6 / 0.9) * (0.5 / 0.75), "very bad": (0.6 / 0.9) * (0.25 / 0.75), "fine": 0.3 / 0.9}
    assert s.probs == pytest.approx(held, abs=1e-12) and sum(held.values()) == pytest.approx(1.0)
    assert s.logprobs == pytest.approx({"very good": LN(0.6 * 0.5), "very bad": LN(0.6 * 0.25), "fine": LN(0.3)})


def test_labels_behind_a_shared_token_off_the_reply_are_unscored():
    ch = Choices(prefix="", continuations={k: k for k in ("very good", "very bad", "fine")})
    s = lp.from_text(steps(("fine", LN(0.5), {"fine": LN(0.5), "very": LN(0.4)})), ch, listed=2)
    assert s.probs == {"fine": 1.0}
    assert s.unscored == {
        "very good": "parts from the reply at a token it shares with very bad; what follows that token is not in "
                     "the answer",
        "very bad": "parts from the reply at a token it shares with very good; what follows that token is not in "
                    "the answer"}


def test_bare_labels_unconstrained_other_spellings_are_not_labels():
    # a server without a constraint answered " Spam!": the labels are read from the alternatives at the
    # first token; "Spam" and "spammer" are not the labels' tokens, " ham" is (the leading space is the
    # reply's own whitespace)
    reply = steps((" Spam", LN(0.5), {" Spam": LN(0.5), "spam": LN(0.2), " ham": LN(0.1), "spammer": LN(0.1)}),
                  ("!", -0.2))
    s = lp.from_text(reply, BARE, listed=4)
    assert s.probs == pytest.approx({"spam": 2 / 3, "ham": 1 / 3}) and s.unscored == {}


def test_a_reply_that_never_reaches_the_labels_scores_none_and_the_call_is_invalid():
    s = lp.from_text(steps(("Sure", -0.1, {"Sure": -0.1}), ("!", -0.1)), JSON, listed=1)
    assert s.probs == {} and set(s.unscored) == {"negative", "neutral", "positive"}
    assert all(why.startswith("the reply does not begin with the answer's prefix") for why in s.unscored.values())
    ended = lp.from_text(steps(('{"', -0.1), ("label", -0.1)), JSON, listed=1)
    assert set(ended.unscored.values()) == {"the reply ended before its label"}

    from benchmark.tasks.classify import ClassifyTask  # noqa: F401 - the task turns it into the stored answer

    task = _task(["negative", "neutral", "positive"])
    answer = task.answer_from_probs(s.probs, s.unscored)
    assert not answer.valid and answer.error.startswith("no label could be scored (negative: the reply does not")


def test_from_first_token_by_id_and_a_logit_bias_changes_nothing():
    first = {"negative": 17, "neutral": 17, "positive": 21, "mixed": None, "other": 30}
    step = Step(None, (Token("▁pos", LN(0.6), 21), Token("▁n", LN(0.3), 17), Token("x", LN(0.1), 99)))
    s = lp.from_first_token(step, first, listed=3, why_missing="its first token merges with the prefix")
    assert s.probs == {"positive": 1.0}
    assert s.unscored == {"negative": "shares its first token with neutral; only the first token is scored here",
                          "neutral": "shares its first token with negative; only the first token is scored here",
                          "mixed": "its first token merges with the prefix",
                          "other": "not among the 3 alternatives the server listed"}
    two = {"negative": 17, "positive": 21}
    plain = lp.from_first_token(step, two, listed=3)
    biased = lp.from_first_token(Step(None, tuple(Token(t.text, t.logprob + 100 - 3.7, t.id)
                                                  for t in step.alternatives)), two, listed=3)
    assert plain.probs == pytest.approx({"negative": 1 / 3, "positive": 2 / 3}, abs=1e-12)
    assert biased.probs == pytest.approx(plain.probs, abs=1e-12)


def test_reading_each_servers_answer_shape():
    # OpenAI / llama-cpp-python: the entry is the generated token
    oa = {"content": [{"token": "pos", "logprob": -0.1, "bytes": None,
                       "top_logprobs": [{"token": "pos", "logprob": -0.1}, {"token": "neg", "logprob": -2.5}]}]}
    assert lp.steps_openai(oa) == [Step(Token("pos", -0.1), (Token("pos", -0.1), Token("neg", -2.5)))]
    # mlx_lm.server: the entry is the first of its unsorted top list, with ids
    mlx = {"content": [{"id": 5, "token": "▁n", "logprob": -2.0,
                        "top_logprobs": [{"id": 5, "token": "▁n", "logprob": -2.0},
                                         {"id": 9, "token": "▁p", "logprob": -0.2}]}]}
    (step,) = lp.steps_openai(mlx, entry_is_alternative=True)
    assert step.token is None and [t.id for t in step.events()] == [5, 9]
    assert lp.steps_openai(None) is None and lp.steps_openai({"content": None}) is None
    # Ollama: the client's typed reply (ollama.Logprob) or plain JSON
    from ollama import ChatResponse

    resp = ChatResponse.model_validate({"model": "m", "done": True, "message": {"role": "assistant", "content": "x"},
                                        "logprobs": [{"token": "x", "logprob": -0.5, "bytes": [120],
                                                      "top_logprobs": [{"token": "y", "logprob": -1.0}]}]})
    assert lp.steps_ollama(resp.logprobs) == [Step(Token("x", -0.5), (Token("y", -1.0),))]
    assert lp.steps_ollama(None) is None
    # a -Infinity (Python's json reads it) is a token with no probability, not a number to add
    inf = lp.steps_openai(json.loads('{"content": [{"token": "a", "logprob": -Infinity, "top_logprobs": '
                                     '[{"token": "b", "logprob": -0.1}]}]}'))
    assert [t.text for t in inf[0].events()] == ["b"]


def test_the_schema_and_the_token_budget_of_a_choice_set():
    assert lp.json_schema_of(JSON) == {"type": "object", "properties": {"label": {
        "type": "string", "enum": ["negative", "neutral", "positive"]}}, "required": ["label"],
        "additionalProperties": False}
    assert lp.json_schema_of(BARE) is None
    assert lp.token_budget(JSON) == len('{"label": "') + len('negative"}') + 8


def _task(labels):
    from benchmark.tasks.classify import ClassifyTask, ClassifyTaskSpec

    spec = ClassifyTaskSpec(name="t", labels=labels, data={"path": "x.csv", "text": "text", "label": "label"})
    return ClassifyTask(spec)


def test_the_answer_keeps_unscored_labels_as_none_and_is_valid():
    task = _task(["negative", "neutral", "positive"])
    a = task.answer_from_probs({"negative": 0.25, "positive": 0.75}, {"neutral": "not among the 20 alternatives"})
    assert a.valid and a.label == "positive" and a.confidence == 0.75
    assert json.dumps(a.label_probs) == '{"negative": 0.25, "neutral": null, "positive": 0.75}'


class PartialScorer:
    """A backend registered in the test that scores labels as a server listing too few alternatives
    would: 'positive' is unscored on even calls; the third call scores nothing."""

    def __init__(self, entry, cfg, endpoint=None):
        self.name, self.calls = entry.name, 0

    def load(self):
        return 0.0

    def engine_info(self):
        return {"engine": "partial"}

    def close(self):
        pass

    def chat(self, *a, **k):
        raise AssertionError("log-probability mode never generates")

    def score_choices(self, messages, choices):
        from benchmark.backends.base import LabelScores, Reply

        self.calls += 1
        labels = list(choices.continuations)
        if self.calls == 3:
            probs, unscored = {}, {k: "not among the 20 alternatives the server listed" for k in labels}
        elif self.calls % 2:
            probs, unscored = {"negative": 0.8, "positive": 0.2}, {}
        else:
            probs, unscored = {"negative": 1.0}, {"positive": "not among the 20 alternatives the server listed"}
        best = max(probs, key=probs.get) if probs else None
        text = choices.prefix + choices.continuations[best] if best else ""
        return LabelScores(logprobs={k: math.log(v) for k, v in probs.items()}, probs=probs, unscored=unscored,
                           reply=Reply(text=text, finish_reason="stop", prompt_tokens=9, completion_tokens=1,
                                       prompt_seconds=None, gen_seconds=None, wall_seconds=0.01))


def test_unscored_labels_are_stored_as_null_and_the_report_reads_the_rest(tmp_path, monkeypatch):
    from benchmark.backends import BACKENDS
    from benchmark.backends.base import BackendOptions, BackendSpec, Capabilities
    from benchmark.config import load_config
    from benchmark.report import build
    from benchmark.run.runner import Runner
    from benchmark.store import Store
    from tests.fake_configs import classify_config

    monkeypatch.setitem(BACKENDS, "partial", BackendSpec(
        name="partial", description="scores some labels", options=BackendOptions, factory=PartialScorer,
        capabilities=Capabilities(label_scores=True)))
    models = "  - name: p\n    backend: partial\n    family: f\n    quant: Q4_0\n"
    cfg = load_config(classify_config(tmp_path, models=models, n_items=4, iterations=1, decoding="logprob",
                                      run_extra="  warmup: false\n"))
    with Store(tmp_path / "results.sqlite") as store:
        Runner(cfg, store, run_id="r", progress=False).run()
        rows = sorted(store.calls("r"), key=lambda r: r["position"])
        rep = build(store, "r")
    stored = [(r["valid"], r["label"], r["label_probs_json"], r["error"]) for r in rows]
    assert stored == [
        (1, "negative", '{"negative": 0.8, "positive": 0.2}', None),
        (1, "negative", '{"negative": 1.0, "positive": null}', None),
        (0, None, None, "no label could be scored (negative: not among the 20 alternatives the server listed; "
                        "positive: not among the 20 alternatives the server listed)"),
        (1, "negative", '{"negative": 1.0, "positive": null}', None)]
    calib = rep.calibration.set_index("model")
    assert calib.loc["p", "calls"] == 3 and calib.loc["p", "mean_confidence"] == pytest.approx((0.8 + 1.0 + 1.0) / 3)


def test_the_mac_example_compares_a_gguf_rung_with_mlx_4bit_of_the_same_base():
    """examples/mac/gguf-vs-mlx.yaml validates as it is (run on real servers in tests/test_mlx.py)."""
    from benchmark.config import load_config
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "examples" / "mac" / "gguf-vs-mlx.yaml")
    models = {m.name: m for m in cfg.models}
    gguf, mlx = models["gemma3-270m-q4km"], models["gemma3-270m-mlx4"]
    assert (gguf.backend, gguf.quant, mlx.backend, mlx.quant) == ("llamacpp", "Q4_K_M", "mlx", "MLX-4bit")
    assert gguf.family == mlx.family and cfg.task.decoding == "logprob"
    assert cfg.compare == [("gemma3-270m-q4km", "gemma3-270m-mlx4")]
