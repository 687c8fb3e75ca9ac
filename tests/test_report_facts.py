"""Facts of a run come from the run: a report made from a copy of the results database in an empty
folder, the model files gone, gives the same Decision (sizes and Pareto marks included) as one made
beside the model files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import shootout
from tests.report_runs import store_run

LADDER = {"m-f16": ("F16", 5_000_000, 0.0, 1.0), "m-q8": ("Q8_0", 3_000_000, 0.2, 0.5),
          "m-q4": ("Q4_K_M", 1_000_000, 0.2, 0.6)}  # quant, file bytes, answer offset, seconds per call


def _config(folder: Path) -> Path:
    (folder / "models").mkdir(parents=True)
    models = ""
    for name, (quant, size, _, _) in LADDER.items():
        with open(folder / "models" / f"{name}.gguf", "wb") as f:
            f.truncate(size)  # a file of that size (the report must not read it)
        models += (f"  - {{name: {name}, backend: llamacpp, path: models/{name}.gguf, family: m, quant: {quant}, "
                   "options: {chat_template: gemma}}\n")
    path = folder / "config.yaml"
    path.write_text("task: sentiment\nnews: {source: snapshot, max_articles: 12}\nrun: {iterations: 2, "
                    f"database: results.sqlite}}\nmodels:\n{models}")
    return path


def _reply(arm: str, item, iteration: int) -> str:
    """m-q8 and m-q4 answer alike, a fixed 0.2 off; m-q4 is slower than m-q8 but the smallest file."""
    value = max(min(item.value + LADDER[arm][2], 1.0), -1.0)
    return json.dumps({"reasoning": "scripted", "sentiment": round(value, 2), "confidence": 0.8})


@pytest.mark.slow
def test_a_report_from_a_copied_database_in_an_empty_folder_decides_as_beside_the_model_files(tmp_path):
    here = tmp_path / "study"
    config = _config(here)
    store_run(config, here / "results.sqlite", _reply, run_id="facts", iterations=2,
              seconds=lambda arm: LADDER[arm][3])
    r = shootout("report", "--db", str(here / "results.sqlite"), "--out", str(here / "reports"), cwd=here)
    assert r.returncode == 0, r.stderr
    beside = pd.read_csv(here / "reports" / "facts" / "decision.csv").set_index("model")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(here / "results.sqlite", elsewhere / "copy.sqlite")
    shutil.rmtree(here)  # the model files, the config and the first report are gone
    r = shootout("report", "--db", "copy.sqlite", "--out", "reports", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    away = pd.read_csv(elsewhere / "reports" / "facts" / "decision.csv").set_index("model")

    pd.testing.assert_frame_equal(beside, away)
    # the sizes are the run's: m-q4 is on the frontier because it is the smallest, although m-q8 is faster
    assert list(away.loc[list(LADDER), "size_mb"]) == [5.0, 3.0, 1.0]
    assert away.loc["m-q4", "pareto"] and away.loc["m-q8", "pareto"] and away.loc["m-f16", "pareto"]
    assert away.loc["m-q4", "size_vs_ref"] == 0.2
