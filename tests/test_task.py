"""The sentiment task: messages per prompt style, and strict reply validation."""

from __future__ import annotations

import json

import pytest

from benchmark.tasks.sentiment import EXAMPLES, SENTIMENT, SYSTEM_PROMPT


def test_few_shot_has_system_and_five_example_turns_then_article():
    msgs = SENTIMENT.messages("Nvidia", "Nvidia beats estimates.", "few_shot")
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 5 + ["user"]
    assert msgs[0]["content"] == SYSTEM_PROMPT
    for (user, reply), (u, a) in zip(EXAMPLES, zip(msgs[1:11:2], msgs[2:11:2])):
        assert u["content"] == user and a["content"] == reply
        assert SENTIMENT.parse(a["content"]).valid  # the examples are themselves valid replies
    assert "Nvidia beats estimates." in msgs[-1]["content"] and "Nvidia" in msgs[-1]["content"]


def test_zero_shot_is_system_plus_article_alone():
    msgs = SENTIMENT.messages("Nvidia", "Nvidia beats estimates.", "zero_shot", system_prompt="Be brief.")
    assert msgs == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Nvidia beats estimates."}]


VALID = {"reasoning": "Earnings beat.", "sentiment": 0.5, "confidence": 0.75}


@pytest.mark.parametrize("reply, why", [
    ({**VALID, "sentiment": 1.25}, "sentiment"),
    ({**VALID, "confidence": -0.1}, "confidence"),
    ({**VALID, "reasoning": "  "}, "reasoning"),
    ({k: v for k, v in VALID.items() if k != "confidence"}, "confidence"),
    ({**VALID, "extra": 1}, "extra"),
    ({**VALID, "sentiment": "0.5"}, "sentiment"),
    ({**VALID, "sentiment": True}, "sentiment"),
])
def test_invalid_replies_are_flagged_with_the_reason(reply, why):
    parsed = SENTIMENT.parse(json.dumps(reply))
    assert not parsed.valid and why in parsed.error
    assert parsed.sentiment is None  # never guessed


@pytest.mark.parametrize("text, why", [
    ("```json\n" + json.dumps(VALID) + "\n```", "code fence"),
    ("The sentiment is positive.", "not JSON"),
    ("", "empty"),
    ("[0.5]", "JSON object"),
])
def test_non_json_replies_are_invalid(text, why):
    parsed = SENTIMENT.parse(text)
    assert not parsed.valid and why in parsed.error


def test_valid_reply_parses_exactly():
    parsed = SENTIMENT.parse(" " + json.dumps({**VALID, "sentiment": -1}) + "\n")
    assert parsed.valid and parsed.sentiment == -1.0 and parsed.confidence == 0.75
    assert parsed.reasoning == "Earnings beat."
