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
from typing import Any

from pydantic import BaseModel, Field, field_validator

from benchmark.tasks.base import Answer, Constraint, Item, ValueScorer, schema_of, strict_config, validate_json


class SentimentReply(BaseModel):
    """A valid reply. Extra keys, missing keys, wrong types and out-of-range values are invalid."""

    model_config = strict_config()

    reasoning: str = Field(min_length=1, max_length=200)
    sentiment: float = Field(ge=-1.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)

    @field_validator("reasoning")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("reasoning is blank")
        return v


SCHEMA: dict[str, Any] = schema_of(SentimentReply)

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


class SentimentTask:
    """Financial-news sentiment: a value in [-1, 1] per article, scored against the hand label."""

    name = "sentiment"
    item_noun = "article"
    variants: tuple[str | None, ...] = (None,)
    reply_model = SentimentReply
    scorer = ValueScorer(name="sentiment", low=-1.0, high=1.0)
    system_prompt = SYSTEM_PROMPT
    zero_shot_system_prompt = ZERO_SHOT_SYSTEM_PROMPT
    examples = EXAMPLES

    def load_items(self, cfg, warn=None) -> list[Item]:
        from benchmark.tasks.sentiment.news import load_articles

        return [a.to_item() for a in load_articles(cfg, **({"warn": warn} if warn else {}))]

    def user_message(self, company: str, text: str) -> str:
        return USER_TEMPLATE.format(company=company, text=text)

    def messages(self, item: Item, prompt_style: str, variant: str | None = None,
                 system_prompt: str | None = None) -> list[dict[str, str]]:
        if prompt_style == "few_shot":
            msgs = [{"role": "system", "content": system_prompt or SYSTEM_PROMPT}]
            for user, assistant in EXAMPLES:
                msgs.append({"role": "user", "content": user})
                msgs.append({"role": "assistant", "content": assistant})
            company = item.fields.get("company") or item.fields.get("ticker") or "the company"
            msgs.append({"role": "user", "content": self.user_message(company, item.text)})
            return msgs
        if prompt_style == "zero_shot":
            return [{"role": "system", "content": system_prompt or ZERO_SHOT_SYSTEM_PROMPT},
                    {"role": "user", "content": item.text}]
        raise ValueError(f"unknown prompt style {prompt_style!r}")

    def constraint(self) -> Constraint:
        return Constraint(schema=SCHEMA)

    def parse(self, text: str) -> Answer:
        reply, error = validate_json(SentimentReply, text)
        if reply is None:
            return Answer(valid=False, error=error)
        return Answer(valid=True, fields=reply.model_dump(), value=float(reply.sentiment),
                      confidence=float(reply.confidence))

    def reply_text(self, fields: dict) -> str:
        return json.dumps({"reasoning": fields["reasoning"], "sentiment": round(float(fields["sentiment"]), 3),
                           "confidence": round(float(fields["confidence"]), 3)}, ensure_ascii=False)

    def warmup_item(self) -> Item:
        return Item(id="warmup", text="Acme shares closed unchanged on a quiet trading day.",
                    fields={"company": "Acme"})

    def choices(self) -> None:
        return None


SENTIMENT = SentimentTask()
