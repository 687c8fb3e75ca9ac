"""Label scoring (log-probability mode) on the embedded Gemma 3 270M: what a label's probability is,
that the same item always gets the same probabilities, and that labels parting at their first token
cost no decode beyond the prompt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.config import load_config
from benchmark.tasks import task_for
from benchmark.tasks.base import Choices
from tests.conftest import ROOT, loaded_engine


def _task(name: str):
    cfg = load_config(ROOT / "examples" / name / "config.yaml")
    task = task_for(cfg)
    return task, task.load_items(cfg, lambda msg: None)


@pytest.fixture(scope="module")
def scorer(embedded_gguf):
    """An engine of its own: scoring labels that part late makes its context hold several sequences."""
    with loaded_engine(embedded_gguf, n_ctx=1024, name="scorer", chat_template="gemma") as b:
        yield b


def _rows_plain(engine, messages, seq: list[int], start: int):
    """Log-softmax rows (float64) at positions start-1 .. len(seq)-1 of ``seq``: the whole sequence
    evaluated from an empty cache in n_batch chunks, logits at every position."""
    rows = np.concatenate([x for _, x in engine.logits_chunks(seq)]).astype(np.float64)[start - 1:]
    rows -= rows.max(axis=1, keepdims=True)
    return rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))


def _rows_one_by_one(engine, messages, seq: list[int], start: int):
    """The same rows with the prompt (``seq[:start]``) evaluated as the scorer evaluates it, then the
    label's tokens decoded one at a time (the scorer decodes them in one batch, side by side)."""
    engine._evaluate_exactly(seq[:start], engine.head_length(messages, seq[:start]))
    rows = [engine._logits().astype(np.float64)]
    for t in seq[start:]:
        engine._decode_one(t)
        rows.append(engine._logits().astype(np.float64))
    rows = np.array(rows)
    rows -= rows.max(axis=1, keepdims=True)
    return rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))


def _reference(engine, messages, choices: Choices, end_of_turn: bool, rows=_rows_one_by_one) -> dict[str, float]:
    """Each label's probability computed the plain way, from every label's whole token sequence
    evaluated on its own (``rows``) and read in float64 at each of its positions. Without the end of
    turn: at each position where labels that agree so far take different tokens (or one of them
    ends), the label's token renormalized over those; with it: every token and the end, then
    normalized over the labels."""
    text = engine.render(messages) + choices.prefix
    labels = list(choices.continuations)
    seqs = [engine.tokenize(text + choices.continuations[k]) for k in labels]
    eog = [int(t) for t in engine._eog]
    shared = min(len(s) for s in seqs) - 1
    while any(s[:shared] != seqs[0][:shared] for s in seqs):
        shared -= 1
    logp = []
    for j, s in enumerate(seqs):
        lsm = rows(engine, messages, s, shared)  # lsm[i - shared] predicts position i
        total = 0.0
        for i in range(shared, len(s) + 1):
            group = [k for k in range(len(seqs)) if seqs[k][:i] == s[:i]]
            options = {seqs[k][i] if i < len(seqs[k]) else -1 for k in group}
            mine = s[i] if i < len(s) else -1

            def lp(t):
                row = lsm[i - shared]
                return float(row[t]) if t >= 0 else float(np.log(np.exp(row[eog]).sum()))
            if end_of_turn:
                total += lp(mine)
            elif len(options) > 1:
                total += lp(mine) - math.log(sum(math.exp(lp(t)) for t in options))
        logp.append(total)
    p = np.exp(np.array(logp) - max(logp))
    return dict(zip(labels, p / p.sum()))


@pytest.mark.slow
def test_labels_parting_at_their_first_token_are_scored_from_the_prompt_alone(scorer):
    """Spam's bare labels and sst2's JSON labels part at their first token: nothing is decoded after
    the prompt, no end-of-turn term counts, and the probabilities are those of the labels' first
    tokens renormalized."""
    for name in ("spam", "sst2"):
        task, items = _task(name)
        for item in items[:2]:
            msgs = task.messages(item, "few_shot")
            got = scorer.score_choices(msgs, task.choices())
            assert got.decoded_tokens == 0 and got.reply.completion_tokens == 0 and not got.end_of_turn
            assert sum(got.probs.values()) == pytest.approx(1.0, abs=1e-12)
            # exactly: the first tokens' logits in the row the prompt's evaluation left (nothing decoded since)
            row = scorer._logits().astype(np.float64)
            text = scorer.render(msgs) + task.choices().prefix
            n = len(scorer.tokenize(text))
            firsts = [scorer.tokenize(text + cont)[n] for cont in task.choices().continuations.values()]
            w = np.exp(row[firsts] - row[firsts].max())
            assert list(got.probs.values()) == pytest.approx(list(w / w.sum()), abs=1e-12)
            lse = row.max() + np.log(np.exp(row - row.max()).sum())
            assert list(got.logprobs.values()) == pytest.approx(list(row[firsts] - lse), abs=1e-6)
            # and within the differences another batching of the prompt makes (up to ~0.2 in a logit on the
            # CPU's quantized kernels), the probabilities of the plain computation
            ref = _reference(scorer, msgs, task.choices(), end_of_turn=False, rows=_rows_plain)
            assert got.probs == pytest.approx(ref, abs=0.08), (name, item.id)


@pytest.mark.slow
def test_the_same_item_gets_the_same_probabilities_whatever_came_before(scorer):
    """The probabilities of an item do not depend on what the cache held: scored first, after other
    items, after a generation of another item, and after the cache was cleared, they are equal to
    the last bit."""
    task, items = _task("stance")
    msgs = [task.messages(it, "few_shot", "definitions") for it in items[:4]]
    first = scorer.score_choices(msgs[0], task.choices()).probs
    seen = []
    for other in msgs[1:]:
        scorer.score_choices(other, task.choices())
        seen.append(scorer.score_choices(msgs[0], task.choices()))
    scorer.chat(msgs[2], max_tokens=3)
    seen.append(scorer.score_choices(msgs[0], task.choices()))
    scorer.clear_cache()
    seen.append(scorer.score_choices(msgs[0], task.choices()))
    assert all(s.probs == first for s in seen)
    # and the few-shot head was reused, not evaluated again, after the first item
    assert seen[0].reply.cached_tokens > 100 and seen[-1].reply.cached_tokens == 0


@pytest.mark.slow
def test_labels_that_part_late_are_decoded_in_one_batch_and_renormalized_where_they_part(scorer):
    """Labels sharing their first tokens (and one label the beginning of another, which parts from it
    by ending) are decoded once, side by side, and each label's probability is the product, over the
    places where labels part, of its token's probability among the tokens that continue some label
    (ending: the end-of-generation tokens')."""
    task, items = _task("sarcasm")
    msgs = task.messages(items[0], "zero_shot")
    texts = ["not_sarcastic", "not_funny", "sarcastic", "sarcasm", "sarc"]
    choices = Choices(prefix="", continuations={k: k for k in texts})
    got = scorer.score_choices(msgs, choices)
    assert got.decoded_tokens >= 3 and scorer.n_seq >= 2
    # the cache holds the prompt alone afterwards: the next call reuses its head and generation works
    again = scorer.score_choices(msgs, choices)
    assert again.probs == got.probs and again.reply.cached_tokens > 0
    # the reference decodes the labels' tokens one at a time: llama.cpp's CPU kernels for 4 tokens and
    # more are others than for fewer (a rare token's log-probability moves by ~0.4 here)
    ref = _reference(scorer, msgs, choices, end_of_turn=False)
    assert got.probs == pytest.approx(ref, abs=0.02)
    assert sum(got.probs.values()) == pytest.approx(1.0, abs=1e-12)
    reply = scorer.chat(msgs, max_tokens=4)
    assert reply.completion_tokens >= 1


@pytest.mark.slow
def test_the_end_of_turn_term_is_scored_only_when_asked(scorer):
    """With end_of_turn the score is the whole reply's probability: every token of the label, then the
    end of turn, normalized over the labels (computed here from the whole sequences). On spam's bare
    labels the end term outweighs the label: the model goes on after 'ham' far more often than it
    stops, so the two ways of scoring rank the labels differently on some messages."""
    task, items = _task("spam")
    differs = 0
    for item in items[:6]:
        msgs = task.messages(item, "few_shot", "trained")
        with_end = scorer.score_choices(msgs, task.choices(), end_of_turn=True)
        without = scorer.score_choices(msgs, task.choices())
        assert with_end.end_of_turn and with_end.decoded_tokens == 2  # each label's token, for the end's logits
        ref = _reference(scorer, msgs, task.choices(), end_of_turn=True)
        assert with_end.probs == pytest.approx(ref, abs=0.02)
        differs += max(with_end.probs, key=with_end.probs.get) != max(without.probs, key=without.probs.get)
        assert with_end.logprobs["ham"] < without.logprobs["ham"] - 5  # the end of turn costs the label dearly
    assert differs >= 1


@pytest.mark.slow
def test_bare_label_scores_agree_with_greedy_generation_on_spam(scorer):
    """The constant answer of earlier versions ('ham' for every spam message, from the end-of-turn
    term) is gone: on 16 messages the scored label is greedy label generation's on at least 15, and
    the scored answers are not one label when generation's are not."""
    task, items = _task("spam")
    c = task.constraint()
    same, scored, generated = 0, [], []
    for item in items[:16]:
        msgs = task.messages(item, "few_shot", "trained")
        gen = task.parse(scorer.chat(msgs, grammar=c.grammar, temperature=0.0, max_tokens=8).text)
        probs = scorer.score_choices(msgs, task.choices()).probs
        label = max(probs, key=probs.get)
        same += label == gen.label
        scored.append(label)
        generated.append(gen.label)
    assert same >= 15, (scored, generated)
    assert len(set(generated)) == 1 or len(set(scored)) > 1
