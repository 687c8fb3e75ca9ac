"""The sentiment task: messages per prompt style, and strict reply validation."""

from __future__ import annotations

import json

import pytest

from benchmark.tasks.base import Item
from benchmark.tasks.sentiment import EXAMPLES, SENTIMENT, SYSTEM_PROMPT


def test_few_shot_has_system_and_five_example_turns_then_article():
    msgs = SENTIMENT.messages(Item(id="n", text="Nvidia beats estimates.", fields={"company": "Nvidia"}), "few_shot")
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 5 + ["user"]
    assert msgs[0]["content"] == SYSTEM_PROMPT
    for (user, reply), (u, a) in zip(EXAMPLES, zip(msgs[1:11:2], msgs[2:11:2])):
        assert u["content"] == user and a["content"] == reply
        assert SENTIMENT.parse(a["content"]).valid  # the examples are themselves valid replies
    assert "Nvidia beats estimates." in msgs[-1]["content"] and "Nvidia" in msgs[-1]["content"]


def test_zero_shot_is_system_plus_article_alone():
    msgs = SENTIMENT.messages(Item(id="n", text="Nvidia beats estimates.", fields={"company": "Nvidia"}), "zero_shot",
                              system_prompt="Be brief.")
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
    assert parsed.value is None and parsed.fields is None  # never guessed


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
    assert parsed.valid and parsed.value == -1.0 and parsed.confidence == 0.75
    assert parsed.fields == {**VALID, "sentiment": -1}


def test_the_reply_schema_is_generated_from_the_reply_model_and_keeps_its_bounds_and_order():
    from formats.gbnf import schema_to_gbnf
    from benchmark.tasks.sentiment import SCHEMA, SentimentReply

    assert SCHEMA == {"type": "object",
                      "properties": {"reasoning": {"type": "string", "minLength": 1, "maxLength": 200},
                                     "sentiment": {"type": "number", "minimum": -1.0, "maximum": 1.0},
                                     "confidence": {"type": "number", "minimum": 0.0, "maximum": 1.0}},
                      "required": ["reasoning", "sentiment", "confidence"], "additionalProperties": False}
    assert list(SCHEMA["properties"]) == list(SentimentReply.model_fields)  # reasoning comes first
    gbnf = schema_to_gbnf(SCHEMA)
    assert '"\\"reasoning\\""' in gbnf and "char{1,200}" in gbnf  # our converter, not the fallback
    assert SENTIMENT.constraint().schema is SCHEMA
