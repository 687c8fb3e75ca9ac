"""Training-set builders: public labelled sets, a task's labelled data, and labels from a larger
model, joined, checked and written as ShareGPT or Alpaca JSONL.

Every record is the task's answer to one text: ``{id, text, answer, source, fields}``, where
``answer`` is a reply the task's reply model accepts (``{reasoning, sentiment, confidence}`` for
sentiment, ``{label}`` for classification). The fine-tune learns the task's zero-shot prompt ->
the task's reply text, which is how the benchmark then asks it (``prompt_style: zero_shot``).
Records written by earlier versions (sentiment fields at the top level) are read too.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ShootoutError

# categorical labels carry no strength: a moderate score each way (change with --label-scores)
LABEL_SCORES = {"positive": 0.6, "neutral": 0.0, "negative": -0.6}
PHRASEBANK_AGREEMENT = {"50agree": 0.5, "66agree": 0.66, "75agree": 0.75, "allagree": 1.0}


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    answer: dict[str, Any]
    source: str
    fields: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _older_layout(cls, data):
        """Sentiment records of earlier versions: reasoning/sentiment/confidence/company at the top."""
        if isinstance(data, dict) and "answer" not in data and "sentiment" in data:
            data = dict(data)
            data["answer"] = {k: data.pop(k) for k in ("reasoning", "sentiment", "confidence") if k in data}
            company = data.pop("company", None)
            if company:
                data["fields"] = {**data.get("fields", {}), "company": company}
        return data

    def item(self):
        from benchmark.tasks.base import Item

        return Item(id=self.id, text=self.text, fields=self.fields)

    def checked(self, task) -> "Record":
        """The record with its answer validated (and normalized) by the task's reply model."""
        reply = task.reply_model.model_validate(self.answer)
        return self.model_copy(update={"answer": reply.model_dump()})


def sentiment_record(rid: str, text: str, reasoning: str, sentiment: float, confidence: float, source: str,
                     company: str | None = None) -> Record:
    return Record(id=rid, text=text, source=source, fields={"company": company} if company else {},
                  answer={"reasoning": reasoning, "sentiment": sentiment, "confidence": confidence})


def _rid(source: str, text: str) -> str:
    return f"{source}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


def _label_reasoning(label: str, what: str) -> str:
    return f"The {what} reads as {label}."


# ------------------------------------------------------------------ public sets

def from_airline_csv(path: str | Path, label_scores: dict[str, float] | None = None) -> list[Record]:
    """Twitter US Airline Sentiment (Kaggle/Figure Eight) CSV: ``text``, ``airline_sentiment``,
    ``airline_sentiment_confidence``."""
    scores = label_scores or LABEL_SCORES
    path = Path(path)
    if not path.is_file():
        raise ShootoutError(f"file not found: {path}", "download Tweets.csv and pass its path")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"text", "airline_sentiment"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise ShootoutError(f"{path}: expected the columns {sorted(need)} (and airline_sentiment_confidence); "
                                f"found {reader.fieldnames}", "pass the airline tweets CSV (Tweets.csv)")
        out = []
        for i, row in enumerate(reader, 2):
            label = (row["airline_sentiment"] or "").strip().lower()
            if label not in scores:
                raise ShootoutError(f"{path}, line {i}: unknown label '{label}'", f"expected one of {sorted(scores)}")
            conf = row.get("airline_sentiment_confidence")
            text = row["text"]
            out.append(sentiment_record(_rid("tweets", text), text, _label_reasoning(label, "tweet"), scores[label],
                                        float(conf) if conf not in (None, "") else 1.0, "airline_tweets",
                                        row.get("airline") or None))
    return out


def from_phrasebank(path: str | Path, agreement: float | None = None,
                    label_scores: dict[str, float] | None = None) -> list[Record]:
    """Financial PhraseBank ``Sentences_<N>Agree.txt``: one ``sentence@label`` per line. The share of
    annotators who agreed (from the file name, or ``agreement``) becomes the confidence."""
    scores = label_scores or LABEL_SCORES
    path = Path(path)
    if not path.is_file():
        raise ShootoutError(f"file not found: {path}", "pass a Sentences_*Agree.txt file of the Financial PhraseBank")
    if agreement is None:
        key = path.stem.lower().replace("sentences_", "")
        agreement = PHRASEBANK_AGREEMENT.get(key)
        if agreement is None:
            raise ShootoutError(f"cannot tell the annotator agreement of {path.name}",
                                "pass --agreement (0.5, 0.66, 0.75 or 1.0)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # the published files are Latin-1
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        sentence, sep, label = line.rpartition("@")
        label = label.strip().lower()
        if not sep or label not in scores:
            raise ShootoutError(f"{path}, line {i}: expected 'sentence@label' with label in {sorted(scores)}")
        out.append(sentiment_record(_rid("phrasebank", sentence), sentence.strip(), _label_reasoning(label, "sentence"),
                                    scores[label], agreement, "financial_phrasebank"))
    return out


# ------------------------------------------------------------------ labels from a larger model

def read_jsonl(path: str | Path) -> Iterator[dict]:
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                if f.read(1) == "":  # a last line cut by a kill: ignore it, it will be redone
                    return
                raise ShootoutError(f"{path}, line {i}: not JSON", "fix or remove that line") from None


def _append(path: Path, obj: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def label_items(task, items: Iterable, backend, out: str | Path, *, retries: int = 2, temperature: float = 0.0,
                seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict:
    """Label each item with ``backend`` (any harness backend, loaded) through the task's few-shot
    prompt and reply constraint; valid replies go to ``out`` as records, one line each, written as
    they come. Items already in ``out`` are skipped, so a killed run resumes where it stopped.
    Replies still invalid after ``retries`` retries go to ``<out>.rejected.jsonl``."""
    out = Path(out)
    rejected = out.with_name(out.stem + ".rejected.jsonl")
    done = {r["id"] for r in read_jsonl(out)} if out.is_file() else set()
    if out.is_file():  # drop a half-written last line left by a kill
        data = out.read_bytes()
        if data and not data.endswith(b"\n"):
            out.write_bytes(data[:data.rfind(b"\n") + 1])
    items = list(items)
    prefix = "news" if task.name == "sentiment" else task.name
    todo = [it for it in items if f"{prefix}-{it.id}" not in done]
    stats = {"already": len(items) - len(todo), "labelled": 0, "rejected": 0, "calls": 0}
    c = task.constraint()
    for k, it in enumerate(todo):
        msgs = task.messages(it, "few_shot")
        last = None
        for attempt in range(retries + 1):
            reply = backend.chat(msgs, schema=c.schema, grammar=c.grammar,
                                 temperature=temperature if attempt == 0 else 0.7, seed=seed + attempt, max_tokens=256)
            stats["calls"] += 1
            answer = task.parse(reply.text)
            last = (reply.text, answer.error)
            if answer.valid:
                rec = Record(id=f"{prefix}-{it.id}", text=it.text, answer=answer.fields,
                             source=f"labelled:{getattr(backend, 'name', 'model')}",
                             fields={k: v for k, v in it.fields.items() if k == "company"})
                _append(out, rec.model_dump())
                stats["labelled"] += 1
                break
        else:
            _append(rejected, {"id": f"{prefix}-{it.id}", "reply": last[0], "error": last[1]})
            stats["rejected"] += 1
        if progress:
            progress(k + 1, len(todo))
    return stats


def from_task_data(task) -> dict[str, list[Record]]:
    """A classification task's labelled data (merged, split with its recorded seed) as records per split."""
    out: dict[str, list[Record]] = {}
    for it in task.all_items():
        rec = Record(id=it.id, text=it.text, answer={"label": it.label}, source=task.name,
                     fields={k: v for k, v in it.fields.items() if isinstance(v, (str, int, float))})
        out.setdefault(it.split or "train", []).append(rec)
    return out


# ------------------------------------------------------------------ join, check, export

_TAG = re.compile(r"<[^>]{1,200}>")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def sanitize(text: str) -> str:
    """HTML entities and tags out, control characters out, Unicode NFC, whitespace collapsed."""
    text = html.unescape(text)
    text = _TAG.sub(" ", text)
    text = _CTRL.sub("", unicodedata.normalize("NFC", text))
    return re.sub(r"\s+", " ", text).strip()


def _dedupe_key(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def join(inputs: Iterable[str | Path], out: str | Path, task=None) -> dict:
    """Records from JSONL files -> sanitized, validated against the task's reply model (default:
    sentiment), de-duplicated (first kept) -> ``out``."""
    task = task or _sentiment()
    out = Path(out)
    seen: set[str] = set()
    kept: list[dict] = []
    counts = {"read": 0, "invalid": 0, "duplicates": 0}
    problems: list[str] = []
    for path in inputs:
        path = Path(path)
        if not path.is_file():
            raise ShootoutError(f"file not found: {path}")
        for i, raw in enumerate(read_jsonl(path), 1):
            counts["read"] += 1
            try:
                rec = Record.model_validate(raw)
                answer = dict(rec.answer)
                if isinstance(answer.get("reasoning"), str):
                    answer["reasoning"] = sanitize(answer["reasoning"])
                rec = rec.model_copy(update={"text": sanitize(rec.text), "answer": answer}).checked(task)
                if not rec.text:
                    raise ValueError("text is empty after sanitizing")
            except (ValidationError, ValueError) as exc:
                counts["invalid"] += 1
                if len(problems) < 5:
                    if isinstance(exc, ValidationError):
                        first = exc.errors()[0]
                        why = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
                    else:
                        why = str(exc)
                    problems.append(f"{path.name} record {i}: {why}")
                continue
            key = _dedupe_key(rec.text)
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            kept.append(rec.model_dump())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return {**counts, "kept": len(kept), "problems": problems}


def write_records(records: Iterable[Record], out: str | Path) -> int:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.model_dump(), ensure_ascii=False) + "\n")
            n += 1
    return n


def _sentiment():
    from benchmark.tasks.sentiment import SENTIMENT

    return SENTIMENT


def _turns(rec: Record, task, system_prompt: str | None) -> list[dict[str, str]]:
    """The task's zero-shot prompt for the record's text (how the benchmark asks a fine-tune), then the answer."""
    msgs = task.messages(rec.item(), "zero_shot", system_prompt=system_prompt)
    return msgs + [{"role": "assistant", "content": task.reply_text(rec.answer)}]


def sharegpt(rec: Record, task=None, system_prompt: str | None = None) -> dict:
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"id": rec.id, "conversations": [{"from": names[m["role"]], "value": m["content"]}
                                            for m in _turns(rec, task or _sentiment(), system_prompt)]}


def alpaca(rec: Record, task=None, system_prompt: str | None = None) -> dict:
    system, user, reply = _turns(rec, task or _sentiment(), system_prompt)
    return {"instruction": system["content"], "input": user["content"], "output": reply["content"]}


def export(records_path: str | Path, out: str | Path, fmt: str, task=None, system_prompt: str | None = None) -> int:
    conv = {"sharegpt": sharegpt, "alpaca": alpaca}.get(fmt)
    if conv is None:
        raise ShootoutError(f"unknown format '{fmt}'", "use sharegpt or alpaca")
    task = task or _sentiment()
    recs = []
    for i, r in enumerate(read_jsonl(records_path), 1):
        try:
            recs.append(Record.model_validate(r).checked(task))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ShootoutError(f"{records_path}, record {i}: {'.'.join(map(str, first['loc']))}: {first['msg']}",
                                f"the records must answer the task '{task.name}'; build them with `shootout data`"
                                ) from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(conv(r, task, system_prompt), ensure_ascii=False) + "\n")
    return len(recs)


ROLE_FROM_SHAREGPT = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def load_conversations(path: str | Path) -> list[list[dict[str, str]]]:
    """ShareGPT JSONL -> chat messages; the last turn of each must be the assistant's."""
    convs = []
    for i, row in enumerate(read_jsonl(path), 1):
        turns = row.get("conversations") or row.get("messages")
        if not turns:
            raise ShootoutError(f"{path}, record {i}: no 'conversations'", "write the set with `shootout data export`")
        msgs = []
        for t in turns:
            role = ROLE_FROM_SHAREGPT.get(t.get("from") or t.get("role"))
            if role is None:
                raise ShootoutError(f"{path}, record {i}: unknown role {t.get('from') or t.get('role')!r}")
            msgs.append({"role": role, "content": t.get("value", t.get("content", ""))})
        if msgs[-1]["role"] != "assistant":
            raise ShootoutError(f"{path}, record {i}: the last turn must be the assistant's answer")
        convs.append(msgs)
    if not convs:
        raise ShootoutError(f"{path} holds no conversations")
    return convs


def synthetic_sharegpt(n: int, seed: int = 0, system_prompt: str = "Rate it.") -> list[dict]:
    """A small learnable task for tests and timing runs: the answer follows from one word of the text."""
    import random

    rng = random.Random(seed)
    firms = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell"]
    up, down = ["rose", "surged", "climbed", "jumped"], ["fell", "slumped", "dropped", "sank"]
    rows = []
    for i in range(n):
        good = i % 2 == 0
        text = f"{rng.choice(firms)} shares {rng.choice(up if good else down)} after results."
        reply = json.dumps({"reasoning": "Positive news." if good else "Negative news.",
                            "sentiment": 0.6 if good else -0.6, "confidence": 0.9})
        rows.append({"conversations": [{"from": "system", "value": system_prompt}, {"from": "human", "value": text},
                                       {"from": "gpt", "value": reply}]})
    return rows
