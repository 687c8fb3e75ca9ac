"""``mlx_lm.server`` (Apple's MLX on a Mac; MLX's CPU wheels on Linux): OpenAI's chat completions
with the server's own ways, read from mlx_lm/server.py and mlx_lm/generate.py (mlx-lm 0.32.2) and
checked against the real server by tests/test_mlx.py and benchmarks/mlx_probe.py:

- ``model`` is ``default_model`` (the model the server was started with) unless config.yaml names
  one: any other name is loaded by the server as a folder or a Hugging Face repository (a name it
  cannot find is a 404).
- ``GET /v1/models`` lists the Hugging Face cache and answers 200 with an empty body when there is
  no cache folder: :meth:`MlxServerBackend.load` takes that as a server that lists nothing.
- ``response_format`` (a JSON schema) is ignored, and there is no grammar: generation is never
  constrained (no ``json_schema`` capability, so the runner sends no schema).
- ``logprobs`` with ``top_logprobs`` 0..11 (12 is HTTP 400); each entry is the first of its unsorted
  top list (``dict(top[0], top_logprobs=top)``), so it does not name the generated token, and token
  strings are vocabulary pieces (``▁pos``), not text. ``logit_bias`` (keys: token ids) is applied
  before the log-probabilities are taken (generate.py: logits processors, then log-softmax).
- ``usage`` has no timings: only the wall clock is stored.

Label scoring (task.decoding: logprob). The labels can only be held by ``logit_bias``, which biases a
token at every position, so only the first token is scored: the prompt is rendered here with the
model's own tokenizer and chat template (``options.tokenizer``, default the model's folder), the
answer prefix appended (``{"label": "`` for JSON answers: a chat request cannot start the reply
for the model), and sent to ``/v1/completions`` for one token, with +100 on each label's first token
and ``top_logprobs`` = the number of labels. The bias shifts every label token alike, so their
log-odds stay the model's and the top list is exactly the label tokens: each label's probability is
its first token's, renormalized over the labels' (``LabelScores.logprobs`` are the listed, biased
values: only their differences are the model's). Labels that share a first token are unscored;
with more than 11 labels the ones below the 11 listed are unscored.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from benchmark.backends import logprobs as lp
from benchmark.backends.base import BackendOptions, BackendSpec, Capabilities, LabelScores
from benchmark.backends.http import BadAnswer, Exchange, HTTPReply, shown
from benchmark.backends.openai_compat import RETRIES, TIMEOUT_S, OpenAICompatBackend, _count, scores_reply
from core.errors import ShootoutError

DEFAULT_MODEL = "default_model"
MAX_TOP_LOGPROBS = 11   # server.py CompletionRequest validation: top_logprobs in 0..11
BIAS = 100.0            # added to each label's first token: far above any other token's logit


class MlxServerBackend(OpenAICompatBackend):
    def __init__(self, base_url: str, model: str = DEFAULT_MODEL, *, tokenizer: str | None = None, **kw):
        super().__init__(base_url, model, **kw)
        self.tokenizer_ref = tokenizer
        self._tok = None
        self.listing_empty = False

    def listing(self, ex: Exchange) -> list[str]:
        """An empty 200 answer to GET /v1/models (no Hugging Face cache folder) is a server that lists
        nothing, not a wrong address."""
        if ex.ok and not ex.body.strip():
            self.listing_empty = True
            return []
        return super().listing(ex)

    def engine_info(self) -> dict[str, Any]:
        return {**super().engine_info(), "engine": "mlx_lm.server (OpenAI-compatible HTTP)",
                "tokenizer": self.tokenizer_ref or self._default_tokenizer(),
                "models_listing": "empty (no Hugging Face cache folder)" if self.listing_empty else "listed",
                "constraint": "none (mlx_lm.server ignores response_format)",
                "label_scoring": f"first token only: /v1/completions, max_tokens 1, logit_bias +{BIAS:g} on each "
                                 "label's first token"}

    # ------------------------------------------------------------------ tokenizer
    def _default_tokenizer(self) -> str | None:
        """The folder or repository the server serves: the model named here, else a listed model that
        is a folder on this machine (mlx_lm.server lists the --model folder, resolved)."""
        if self.model != DEFAULT_MODEL:
            return self.model
        from pathlib import Path

        local = [m for m in self.server_models if m and Path(m).is_dir()]
        return local[-1] if local else None

    def tokenizer(self):
        """The model's tokenizer (transformers, as mlx-lm loads it), loaded once."""
        if self._tok is None:
            ref = self.tokenizer_ref or self._default_tokenizer()
            if ref is None:
                raise ShootoutError(f"model '{self.name}': label scoring on mlx_lm.server needs the model's tokenizer "
                                    "(logit_bias takes token ids), and the server does not say which model it serves",
                                    "set options.tokenizer to the folder or Hugging Face repository given to "
                                    "`mlx_lm.server --model`")
            try:
                from transformers import AutoTokenizer

                self._tok = AutoTokenizer.from_pretrained(ref)
            except Exception as exc:  # noqa: BLE001 - any failure to read it is the same advice
                raise ShootoutError(f"model '{self.name}': cannot load the tokenizer '{ref}' ({type(exc).__name__}: "
                                    f"{str(exc)[:200]})",
                                    "set options.tokenizer to the folder or Hugging Face repository the server "
                                    "serves (the same files: labels are found by token id)") from None
        return self._tok

    def prompt_and_first_ids(self, messages: list[dict[str, str]], choices) -> tuple[str, dict[str, int | None]]:
        """The completion prompt (the chat rendered by the model's template, then the answer prefix) and
        each label's first token id after it: where the tokens of prompt + label first differ from the
        prompt's own (None where the label's text merges with the prompt's last token)."""
        tok = self.tokenizer()
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + choices.prefix
        base = tok.encode(text)  # as the server tokenizes a completion prompt (special tokens added)
        bos = tok.bos_token
        if bos and text.startswith(bos) and len(base) > 1 and base[0] == base[1] == tok.bos_token_id:
            text = text[len(bos):]  # the template wrote the BOS the tokenizer adds again
            base = tok.encode(text)
        first: dict[str, int | None] = {}
        for label, cont in choices.continuations.items():
            ids = tok.encode(text + cont)
            first[label] = ids[len(base)] if ids[:len(base)] == base and len(ids) > len(base) else None
        return text, first

    # ------------------------------------------------------------------ label scoring
    def score_choices(self, messages: list[dict[str, str]], choices) -> LabelScores:
        prompt, first = self.prompt_and_first_ids(messages, choices)
        distinct = sorted({i for i in first.values() if i is not None})
        listed = min(MAX_TOP_LOGPROBS, max(1, len(distinct)))
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "seed": 0,
                "stream": False, "logprobs": True, "top_logprobs": listed,
                "logit_bias": {str(i): BIAS for i in distinct}}

        def answer(ex: Exchange) -> LabelScores:
            if not ex.ok:
                too_long = self._too_long(ex.status, ex.detail(), ex.error_object())
                if too_long is not None:
                    raise too_long
                if ex.status == 404:
                    raise ShootoutError(f"model '{self.name}': mlx_lm.server at {self.base_url} has no model "
                                        f"'{self.model}' ({ex.detail()})",
                                        "leave model out (default_model: the model the server serves), or name the "
                                        "folder it serves")
                raise self.http.refused(ex, "POST /completions")
            out = ex.json_object()
            choice = out.get("choices")[0] if isinstance(out.get("choices"), list) and out["choices"] else None
            if not isinstance(choice, dict):
                raise BadAnswer("wrong_shape", f"a completion without choices[0]: {shown(ex.body)}")
            steps = lp.steps_openai(choice.get("logprobs"), entry_is_alternative=True)
            if not steps:
                raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered a label scoring "
                                    "without log-probabilities (choices[0].logprobs.content)",
                                    "use backend: mlx only with mlx_lm.server, or task.decoding: generate")
            scores = lp.from_first_token(steps[0], first, listed=listed,
                                         why_missing="its first token merges with the answer's prefix")
            usage = out.get("usage") if isinstance(out.get("usage"), dict) else {}
            details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) \
                else {}
            text = choice.get("text") if isinstance(choice.get("text"), str) else ""
            reply = HTTPReply(text=text, finish_reason="stop", prompt_tokens=_count(usage.get("prompt_tokens")),
                              cached_tokens=_count(details.get("cached_tokens")),
                              completion_tokens=_count(usage.get("completion_tokens")), prompt_seconds=None,
                              gen_seconds=None, wall_seconds=ex.t_end - ex.t0, attempts=ex.attempts)
            return scores_reply(scores, choices, reply)

        t0 = time.perf_counter()
        scored = self.http.call("POST", "/completions", body, parse=answer,
                                reads=lambda ex: self._too_long(ex.status, ex.detail(), ex.error_object()) is not None)
        wall = time.perf_counter() - t0
        return scored.model_copy(update={"reply": scored.reply.model_copy(update={"wall_seconds": wall})})


# ---------------------------------------------------------------------------- registration


class MlxOptions(BackendOptions):
    tokenizer: str | None = Field(None, description="label scoring: the folder or Hugging Face repository of the "
                                                    "served model, for its tokenizer (default: model, or the folder "
                                                    "the server lists)")
    api_key: str | None = Field(None, description="bearer token, if a proxy in front of the server wants one")
    timeout_s: float | None = Field(None, gt=0, description=f"wall-clock seconds allowed for one request (default "
                                                            f"{TIMEOUT_S:g})")
    retries: int | None = Field(None, ge=0, le=10, description=f"retries of a call after a 5xx answer, a timeout, a "
                                                               f"cut connection or a garbled body (default {RETRIES}); "
                                                               "never after a 4xx")
    stream: bool = Field(False, description="stream the replies (generation), recording the time to the first "
                                            "content token and the inter-token latency of every call")


def _make(entry, cfg, endpoint: str | None = None) -> MlxServerBackend:
    o = entry.options
    tokenizer = o.tokenizer
    if tokenizer and cfg.resolve(tokenizer).is_dir():  # a folder, from config.yaml's folder; else a repository
        tokenizer = str(cfg.resolve(tokenizer))
    return MlxServerBackend(endpoint or entry.base_url, entry.model or DEFAULT_MODEL, name=entry.name,
                            api_key=o.api_key, timeout=o.timeout_s, retries=o.retries, stream=o.stream,
                            tokenizer=tokenizer)


SPEC = BackendSpec(
    name="mlx", where="base_url", where_is_endpoint=True, options=MlxOptions, factory=_make,
    address=lambda b: b.base_url,
    description="mlx_lm.server (MLX on a Mac); base_url; model: default_model unless named",
    capabilities=Capabilities(label_scores=True, endpoints=True))
