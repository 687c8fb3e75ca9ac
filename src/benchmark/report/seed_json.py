"""Results in the older tool's layout, for users coming from it:

``sentiments/<model>/<TICKER>_<iteration>.json`` with ``average_sentiment``, ``time_taken`` and
``sentiments{id: {reasoning, sentiment, confidence, valid, url, published, time_taken}}``.

``average_sentiment`` follows the older tool: the confidence-weighted mean of the valid, non-zero
sentiments, rounded to two decimals (0.0 when there are none). ``time_taken`` is the sum of the
wall-clock seconds of every call in the file, valid or not. Invalid replies are kept, with
``valid: false``, their raw text and the validation error.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from core.errors import ShootoutError
from core.naming import slug
from benchmark.store import Store


def weighted_average(items: list[dict]) -> float:
    num = den = 0.0
    for it in items:
        if it["valid"] and it["sentiment"] and it["confidence"]:
            num += it["sentiment"] * it["confidence"]
            den += it["confidence"]
    return round(num / den, 2) if den else 0.0


def export_seed_format(store: Store, run_id: str, out_dir: str | Path) -> list[Path]:
    if (store.run(run_id)["task"] or "") != "sentiment":
        raise ShootoutError(f"run {run_id} is a '{store.run(run_id)['task']}' run; the older tool's layout holds "
                            "sentiment results only", "use `shootout report` (workbook and CSVs) for this run")
    out_dir = Path(out_dir)
    items = {i.id: i for i in store.items(run_id)}
    groups: dict[tuple[str, str, int], list] = defaultdict(list)
    for c in store.calls(run_id):
        groups[(c["model"], items[c["item_id"]].fields.get("ticker") or "ITEMS", c["iteration"])].append(c)
    written = []
    for (model, ticker, it), calls in sorted(groups.items()):
        sentiments = {}
        for c in sorted(calls, key=lambda c: c["position"] if c["position"] is not None else 0):
            f = items[c["item_id"]].fields
            answer = json.loads(c["answer_json"]) if c["answer_json"] else {}
            entry = {"reasoning": answer.get("reasoning"), "sentiment": c["value"], "confidence": c["confidence"],
                     "valid": bool(c["valid"]), "url": f.get("url"), "published": f.get("published") or "",
                     "time_taken": round(c["wall_seconds"] or 0.0, 3)}
            if not c["valid"]:
                entry["raw_text"] = c["raw_text"]
                entry["error"] = c["error"]
            sentiments[c["item_id"]] = entry
        data = {"average_sentiment": weighted_average(list(sentiments.values())),
                "time_taken": round(sum(c["wall_seconds"] or 0.0 for c in calls), 2),
                "sentiments": sentiments}
        path = out_dir / slug(model) / f"{slug(ticker)}_{it}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        written.append(path)
    return written
