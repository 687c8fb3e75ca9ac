"""A hostile article page: 10 MB of HTML in 135,000 paragraphs, each naming the company.

Measures, each in a fresh subprocess, the seconds and peak memory (max RSS) of reading the page's
paragraphs three ways, side by side:

- before: the original extraction (BeautifulSoup tree with html.parser, a list scanned for
  duplicates: quadratic in the number of paragraphs);
- now, uncapped: ``extract_paragraphs`` (one pass of the stdlib HTML parser, no tree, a set for
  duplicates) reading the whole page;
- now, as a run uses it: the same, stopping at news.max_article_chars (10,000 characters).

Usage: .venv/bin/python benchmarks/news_page.py [--no-before]   (before takes minutes on 2 cores)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
mode = sys.argv[2]
n = 135_000
filler = "lorem ipsum dolor sit amet, consectetur adip"
page = ("<html><body>" + "".join(f"<p>Acme paragraph {i} {filler}</p>\n" for i in range(n)) + "</body></html>").encode()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "before":
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(page, "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    out = []
    for tag in soup.find_all(["p", "h2"]):
        text = " ".join(tag.get_text(" ", strip=True).split())
        if text and any(k in text.lower() for k in ("acme",)) and text not in out:
            out.append(text)
else:
    from benchmark.tasks.sentiment.news import extract_paragraphs
    out = extract_paragraphs(page, "Acme", "ACME", max_chars=None if mode == "uncapped" else 10_000)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mode": mode, "bytes": len(page), "paragraphs": len(out), "seconds": round(dt, 2),
                  "peak_mb": round(peak / 1024), "extra_mb": round((peak - base) / 1024)}))
"""


def main() -> None:
    rows = []
    modes = ("uncapped", "capped") if "--no-before" in sys.argv else ("before", "uncapped", "capped")
    for mode in modes:
        res = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "src"), mode], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(res.stdout))
    print(f"page: {rows[0]['bytes'] / 1e6:.1f} MB, 135,000 paragraphs")

    print(f"{'extraction':<34}{'paragraphs':>11}{'seconds':>9}{'peak MB':>9}{'extra MB':>10}")
    names = {"before": "before (bs4 tree, list dedupe)", "uncapped": "now, whole page",
             "capped": "now, capped at 10,000 chars"}
    for r in rows:
        print(f"{names[r['mode']]:<34}{r['paragraphs']:>11,}{r['seconds']:>9}{r['peak_mb']:>9}{r['extra_mb']:>10}")
    if rows[0]["mode"] != "before":
        return
    before = rows[0]["seconds"]
    for r in rows[1:]:
        print(f"{names[r['mode']]}: {before / max(r['seconds'], 1e-3):.0f}x faster than before")


if __name__ == "__main__":
    main()
