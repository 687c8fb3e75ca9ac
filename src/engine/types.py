"""What the engine answers: a reply with its token counts and timings, label scores, and the
refusal of a prompt that does not fit the context. Backends of every kind answer with these types."""

from __future__ import annotations

from pydantic import BaseModel, Field

from core.errors import ShootoutError


class PromptTooLong(ShootoutError):
    """The prompt does not fit the model's context. Never sent truncated: the runner stores the call
    as failed, with this reason, and goes on with the next item."""

    def __init__(self, model: str, prompt_tokens: int, n_ctx: int, hint: str | None = None):
        super().__init__(f"model '{model}': the prompt needs {prompt_tokens} tokens but the context holds {n_ctx}",
                         hint or "raise run.num_ctx (or this model's options.num_ctx), or cap the item length")
        self.model, self.prompt_tokens, self.n_ctx = model, prompt_tokens, n_ctx


class Reply(BaseModel):
    """One model call as the engine saw it. Seconds exclude model load time."""

    text: str
    finish_reason: str = Field(description="'stop' (end of turn / EOS), 'length' (hit the token limit), "
                                           "'prompt_too_long' (not sent: the prompt does not fit the context) or "
                                           "'aborted' (the engine ended the generation without a final answer)")
    prompt_tokens: int
    cached_tokens: int = Field(0, description="prompt tokens served from the engine's cache")
    completion_tokens: int
    prompt_seconds: float | None = Field(description="evaluating the prompt tokens not served from cache "
                                         "(None when the engine does not report it)")
    gen_seconds: float | None = Field(description="generating the completion (decode + sampling; None when the "
                                      "engine does not report it)")
    wall_seconds: float = Field(description="wall clock around the whole call")


class LabelScores(BaseModel):
    """Every label scored from one prompt evaluation (log-probability mode)."""

    logprobs: dict[str, float] = Field(description="the model's log-probability of the tokens that choose each label "
                                       "(where labels part; with end_of_turn, every token of it and the end)")
    probs: dict[str, float] = Field(description="each label's probability: generation held to the labels answering it "
                                    "(with end_of_turn, the whole reply's probability normalized over the labels)")
    reply: Reply = Field(description="the most probable label's text, with the call's token counts and timings "
                         "(completion_tokens: the label tokens decoded after the prompt, 0 when the prompt's "
                         "logits decide)")
    end_of_turn: bool = Field(False, description="whether the end-of-turn term was scored")
    decoded_tokens: int = Field(0, description="tokens decoded after the prompt, in one batch")
    unscored: dict[str, str] = Field(default_factory=dict,
                                     description="labels the answer could not score, with why (a server that listed "
                                                 "too few alternatives); probs are then over the other labels")
