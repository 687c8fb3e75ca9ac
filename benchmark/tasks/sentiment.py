"""Financial news sentiment, the task of the seed article.

The reply is a JSON object ``{reasoning, sentiment, confidence}``: non-empty reasoning, a
sentiment in [-1, 1] and a confidence in [0, 1]. Few-shot models get the system prompt plus five
worked examples as real user/assistant turns in every request; zero-shot models (fine-tunes
trained on the article alone) get their system prompt and the article.

The five examples reuse the example articles and scores of the seed project's prompt (facts of
the task); the wording here is this project's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class SentimentReply(BaseModel):
    """A valid reply. Extra keys, missing keys, wrong types and out-of-range values are invalid."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reasoning: str = Field(min_length=1, max_length=200)
    sentiment: float = Field(ge=-1.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)

    @field_validator("reasoning")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("reasoning is blank")
        return v


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "minLength": 1, "maxLength": 200},
        "sentiment": {"type": "number", "minimum": -1, "maximum": 1},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["reasoning", "sentiment", "confidence"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = """\
You analyse the sentiment of financial news articles for investors. For each article, judge how \
it is likely to affect the short-term stock value of the company it is about, and answer with one \
JSON object and nothing else:
{"reasoning": string, "sentiment": number, "confidence": number}
- reasoning: one or two sentences (at most 200 characters) naming the facts in the article that drive \
your score.
- sentiment: from -1.0 (very negative for the stock) through 0.0 (neutral, or no conclusion \
possible) to 1.0 (very positive), with two decimals.
- confidence: from 0.0 (a guess) to 1.0 (certain), with two decimals.
Keep the keys exactly as shown. Write no text, markdown or code fences outside the JSON object."""

ZERO_SHOT_SYSTEM_PROMPT = (
    "Classify the sentiment of the financial news article towards the short-term stock value of the "
    "company it is about. Answer with a JSON object with keys reasoning, sentiment (-1 to 1) and "
    "confidence (0 to 1)."
)

USER_TEMPLATE = ("Classify the sentiment towards the potential short-term stock value of {company} in "
                 "this article: <article>{text}</article>")


def _example(company: str, text: str, reasoning: str, sentiment: float, confidence: float) -> tuple[str, str]:
    reply = json.dumps({"reasoning": reasoning, "sentiment": sentiment, "confidence": confidence})
    return USER_TEMPLATE.format(company=company, text=text), reply


EXAMPLES: list[tuple[str, str]] = [
    _example("NVDA", "NVDA shares rise 5% on earnings beat.",
             "Beating earnings expectations usually lifts investor confidence, so NVDA's stock is likely to gain.",
             0.75, 0.9),
    _example("NVDA", "NVDA shares may be affected by a drop in oil prices. Analysts predict a 5% drop in "
             "stock value due to NVDA's exposure to the energy sector.",
             "Analysts expect falling oil prices to pull NVDA down through its energy-sector exposure, a mild negative.",
             -0.25, 0.8),
    _example("Apple", "Apple's recent launch of its innovative AR glasses has not met expected sales targets.",
             "Missed sales targets for a flagship launch tend to disappoint the market and weigh on Apple's shares.",
             -0.5, 0.6),
    _example("Boeing", "Boeing secures a $5 billion contract for new aircrafts from Emirates, signaling strong "
             "future revenues.",
             "A large new contract points to stronger future revenue for Boeing, which investors should reward.",
             0.85, 0.9),
    _example("Tesla", "Tesla recalls 100,000 vehicles due to safety concerns.",
             "A large safety recall can hurt Tesla's reputation and add costs, which is likely to lower its stock.",
             -0.65, 0.7),
]


@dataclass(frozen=True)
class Parsed:
    valid: bool
    reasoning: str | None = None
    sentiment: float | None = None
    confidence: float | None = None
    error: str | None = None


def _explain(text: str, exc: Exception) -> str:
    stripped = text.strip()
    if not stripped:
        return "empty reply"
    if stripped.startswith("```"):
        return "reply is wrapped in a markdown code fence; the task asks for a bare JSON object"
    if isinstance(exc, ValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(reply)"
            parts.append(f"{loc}: {e['msg']}")
        return "; ".join(parts)
    return f"not JSON: {exc}"


class SentimentTask:
    name = "sentiment"
    schema = SCHEMA
    system_prompt = SYSTEM_PROMPT
    examples = EXAMPLES
    warmup_article = {"company": "Acme", "text": "Acme shares closed unchanged on a quiet trading day."}

    def user_message(self, company: str, text: str) -> str:
        return USER_TEMPLATE.format(company=company, text=text)

    def messages(self, company: str, text: str, prompt_style: str,
                 system_prompt: str | None = None) -> list[dict[str, str]]:
        if prompt_style == "few_shot":
            msgs = [{"role": "system", "content": system_prompt or SYSTEM_PROMPT}]
            for user, assistant in EXAMPLES:
                msgs.append({"role": "user", "content": user})
                msgs.append({"role": "assistant", "content": assistant})
            msgs.append({"role": "user", "content": self.user_message(company, text)})
            return msgs
        if prompt_style == "zero_shot":
            return [{"role": "system", "content": system_prompt or ZERO_SHOT_SYSTEM_PROMPT},
                    {"role": "user", "content": text}]
        raise ValueError(f"unknown prompt style {prompt_style!r}")

    def parse(self, text: str) -> Parsed:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            reply = SentimentReply.model_validate(data)
        except (ValueError, ValidationError) as exc:
            return Parsed(valid=False, error=_explain(text, exc))
        return Parsed(True, reply.reasoning, float(reply.sentiment), float(reply.confidence))


SENTIMENT = SentimentTask()
