"""The HTML report and the read-only viewer on big runs (issue 28, part 3).

1. The HTML report of a 1,000-item x 4-model x 5-iteration run (20,000 calls): the synthetic value run
   of ``benchmark.synthetic.write_db`` with text lengths of a real run put in (each item 2,000
   characters, each reply a ~260-character JSON answer with its reasoning, as the demo's capped
   reasoning gives), then ``benchmark.report.build`` -> the heatmaps (as ``shootout report`` draws them)
   -> ``inputs_from_report`` -> ``write_html``: the file's size and what takes it, and the time of each step;
   then the page in headless Chromium (when installed): load, filters, sort, search.
2. The viewer (``benchmark.report.view.serve``, Datasette) on the 1M-call benchmark database
   (``benchmarks/report_1m.py``'s shape: 20 models x 1,000 items x 50 iterations): each canned query
   over HTTP on 127.0.0.1, twice (first and second request), with the server process's CPU time for
   each (Linux), and the file's sha256 before and after (and no -wal / -shm beside it).

Usage: python benchmarks/html_view.py [--calls N] [--skip-html] [--skip-view]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from benchmark.synthetic import SynthModel, write_db  # noqa: E402

QUANTS = ["F16", "Q8_0", "Q5_K_M", "Q4_K_M"]
WORDS = ("shares rose after the company reported quarterly revenue above expectations while margins narrowed "
         "and guidance for the coming year was kept unchanged amid a slower market").split()


def _text(n_chars: int, seed: int) -> str:
    out, k = [], seed
    while sum(len(w) + 1 for w in out) < n_chars:
        out.append(WORDS[k % len(WORDS)])
        k = k * 1103515245 + 12345 & 0x7FFFFFFF
    return " ".join(out)[:n_chars]


def realistic_text(db: Path, item_chars: int = 2000) -> None:
    """Give the synthetic run a real run's text lengths (this benchmark's own file)."""
    con = sqlite3.connect(db)
    ids = [r[0] for r in con.execute("SELECT item_id FROM items")]
    con.executemany("UPDATE items SET text = ? WHERE item_id = ?", [(_text(item_chars, i), a) for i, a in enumerate(ids)])
    con.create_function("reasoning", 1, lambda k: _text(180 + k % 20, k))
    con.execute("UPDATE calls SET raw_text = CASE WHEN valid = 1 THEN json_object('reasoning', reasoning(id), "
                "'sentiment', value, 'confidence', confidence) ELSE 'I think the sentiment is mixed <b>but</b>' END")
    con.commit()
    con.close()


def html_part(tmp: Path, n_items: int, n_models: int, n_iter: int) -> None:
    from benchmark import report as rpt
    from benchmark.report.html import inputs_from_report, page, write_html
    from benchmark.report import html_data
    from benchmark.report.charts import write_heatmaps
    from benchmark.store import Store

    models = [SynthModel(f"fam-{q.lower()}", shift=0.02 * k, family="fam", quant=q, invalid_rate=0.02 * k)
              for k, q in enumerate(QUANTS[:n_models])]
    db = tmp / "html.sqlite"
    write_db(db, models, n_items, n_iter, seed=3, run_id="html")
    realistic_text(db)
    times = {}
    t = time.perf_counter()
    with Store(db, create=False) as store:
        rep = rpt.build(store, "html")
        times["report build (statistics)"] = time.perf_counter() - t
        t = time.perf_counter()
        charts = write_heatmaps(rep, tmp / "heatmaps")
        times["heatmaps (shootout report draws them anyway)"] = time.perf_counter() - t
        t = time.perf_counter()
        inputs = inputs_from_report(rep, store, charts)
        times["inputs (items, calls, charts read)"] = time.perf_counter() - t
    t = time.perf_counter()
    out = write_html(inputs, tmp / "html.html")
    times["write_html"] = time.perf_counter() - t
    size = out.stat().st_size
    blob = len(html_data.to_script_json(html_data.explorer_data(inputs)).encode())
    charts = sum(len(b) for _, b in inputs.charts) + len(inputs.decision_chart or b"")
    texts = sum(len(str(x).encode()) for x in inputs.items["text"]) + \
        sum(len(str(x).encode()) for x in inputs.calls["raw_text"])
    print(f"HTML report of {n_items} items x {n_models} models x {n_iter} iterations ({len(inputs.calls):,} calls)")
    print(f"  file size: {size / 1e6:.2f} MB ({size / 2**20:.2f} MiB); target < 20 MB")
    print(f"  explorer JSON blob: {blob / 1e6:.2f} MB (item texts + replies as stored: {texts / 1e6:.2f} MB)")
    print(f"  {inputs.chart_note}")
    print(f"  charts: {len(inputs.charts) + 1} PNGs, {charts / 1e6:.2f} MB before base64 ({charts * 4 / 3 / 1e6:.2f} MB in the page)")
    print(f"  rest (tables, script, styles): {(size - blob - charts * 4 / 3) / 1e6:.2f} MB")
    for k, v in times.items():
        print(f"  {k:<40}{v:8.2f} s")
    assert len(page(inputs)) > 0
    in_chromium(out)


def in_chromium(path: Path) -> None:
    """Open the page in headless Chromium (when installed): load and first render, a filter, a sort, a search."""
    import shutil

    chromium = os.environ.get("SHOOTOUT_CHROMIUM") or shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if not chromium:
        print("  (Chromium or playwright not installed: the page was not opened)")
        return
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        pg = browser.new_page(viewport={"width": 1300, "height": 1400})
        errors = []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        steps = [("open the file, first page rendered", lambda: (pg.goto(path.as_uri()), pg.wait_for_selector("article.item"))),
                 ("filter: invalid replies", lambda: pg.check("#f-invalid")),
                 ("filter: differs from the reference", lambda: pg.check("#f-flip")),
                 ("sort: most iterations differing", lambda: pg.select_option("#f-sort", "flip")),
                 ("search in the texts", lambda: pg.fill("#f-search", "margins narrowed"))]
        print("  in headless Chromium:")
        for name, step in steps:
            t = time.perf_counter()
            step()
            status = pg.locator("#explorer .status").inner_text()
            print(f"    {name:<38}{time.perf_counter() - t:6.2f} s   {status}")
        heap = pg.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0") / 1e6
        print(f"    JavaScript heap {heap:.0f} MB; console errors: {errors or 'none'}")
        browser.close()


def _sha(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def view_part(tmp: Path, calls: int, models: int, iterations: int, db: Path | None = None) -> None:
    import httpx

    n_items = calls // (models * iterations)
    gen = 0.0
    if db is None:
        ms = [SynthModel(f"fam{i // 4}-{QUANTS[i % 4].lower()}", shift=0.01 * i, family=f"fam{i // 4}",
                         quant=QUANTS[i % 4], invalid_rate=0.03) for i in range(models)]
        db = tmp / "big.sqlite"
        t = time.perf_counter()
        write_db(db, ms, n_items, iterations, seed=1, run_id="big")
        gen = time.perf_counter() - t
    before = _sha(db)
    size = db.stat().st_size
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-u", "-c", "import sys; from benchmark.report.view import serve; "
                             "serve(sys.argv[1], 0)", str(db)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        line = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/\S+)", line).group(1)
        with httpx.Client(timeout=120) as client:
            while True:
                try:
                    if client.get(url.rsplit("/", 1)[0] + "/-/versions.json").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            start = time.perf_counter() - t
            print(f"viewer on a results database of {calls:,} calls ({models} models x {n_items} items x {iterations} "
                  f"iterations, {size / 2**20:.0f} MiB; generated in {gen:.0f} s, not counted); started and answering "
                  f"in {start:.1f} s (reference resolution included)")
            params = {"run_id": "big", "model": "", "item_id": "art00500"}
            print(f"  {'canned query':<20}{'rows':>7}{'1st s':>9}{'2nd s':>9}{'server CPU s':>14}")
            for q in ("runs", "arms", "flips", "flip_counts", "flips_by_item", "changing_answers", "invalid_replies",
                      "item"):
                out, cpu = [], []
                for _ in range(2):
                    t0, c0 = time.perf_counter(), _cpu(proc.pid)
                    r = client.get(f"{url}/{q}.json", params={**params, "_shape": "objects"})
                    out.append(time.perf_counter() - t0)
                    c1 = _cpu(proc.pid)
                    cpu.append(c1 - c0 if c0 is not None and c1 is not None else float("nan"))
                    r.raise_for_status()
                    body = r.json()
                    if body.get("ok") is False:
                        raise SystemExit(f"{q}: {body.get('error')}")
                rows = len(body["rows"])
                print(f"  {q:<20}{rows:>7}{out[0]:>9.2f}{out[1]:>9.2f}{cpu[0]:>7.2f}/{cpu[1]:.2f}"
                      + ("   (first 1,000 rows)" if body.get("truncated") else ""))
    finally:
        proc.terminate()
        proc.wait(30)
    after = _sha(db)
    left = [p.name for p in db.parent.glob(db.name + "-*")]
    print(f"  database sha256 before {before[:16]}..., after {after[:16]}...: "
          f"{'identical' if before == after else 'CHANGED'}; files beside it: {left or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--skip-html", action="store_true")
    ap.add_argument("--skip-view", action="store_true")
    ap.add_argument("--db", type=Path, help="view this database (of the same shape) instead of generating one")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_html:
            html_part(Path(tmp), 1000, 4, 5)
        if not args.skip_view:
            view_part(Path(tmp), args.calls, args.models, args.iterations, args.db)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (wall times include waiting for a shared CPU)")


if __name__ == "__main__":
    main()
