"""Speed with the same rigour as quality: the run's order (counterbalanced by default, grouped on request),
drift, speed ratios whose intervals fit the design, and the llama-bench-comparable block.

Fast tier: the scripted fake on a virtual clock (its timings are exact, a run takes no time), and the
statistics by simulation. Slow tier: the real engine (the embedded Gemma 3 270M) loaded once per block,
with its block stored and reported."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from benchmark import report as rpt
from benchmark.backends import fake
from benchmark.backends.base import BackendUnavailable
from benchmark.config import load_config
from benchmark.report.console import verdict_lines
from benchmark.run import order as O
from benchmark.run.runner import Runner
from benchmark.stats import paired as P
from benchmark.stats import speed as SP
from benchmark.store import Store
from benchmark.store.rows import BenchRow
from core.errors import ConfigError
from tests.fake_configs import classify_config

N_ITEMS, ITERATIONS = 24, 4
TIMING = "seconds_per_token: 0.01, seconds_per_prompt_token: 0.0001, jitter: 0.1"


def _identical_arms(slow_after: int | None = None, factor: float = 2.0) -> str:
    slow = f", slow_after: {slow_after}, slow_factor: {factor}" if slow_after is not None else ""
    return "".join(f"  - {{name: {n}, backend: fake, family: f, quant: F16, options: {{{TIMING}{slow}}}}}\n"
                   for n in ("a", "b"))


def _run(tmp_path, models: str, order: str | None = None, seed: int = 7, iterations: int = ITERATIONS,
         n_items: int = N_ITEMS, **runner):
    """A run of ``models`` on one virtual machine (exact timings); (its report, the calls in stored order)."""
    run_extra = f"  order: {order}\n" if order else ""
    config = classify_config(tmp_path, models=models, n_items=n_items, iterations=iterations, run_extra=run_extra)
    config.write_text(config.read_text().replace("seed: 7", f"seed: {seed}"))
    machine = fake.FakeMachine(virtual=True)
    with Store(tmp_path / "results.sqlite") as store:
        Runner(load_config(config), store, run_id="r", progress=False, backend_factory=fake.scripted(machine=machine),
               clock=machine.now, **runner).run()
        rep = rpt.build(store, "r")
        calls = pd.DataFrame([dict(r) for r in store.calls("r")])
    return rep, calls


# --------------------------------------------------------------------------- the order


def test_counterbalanced_blocks_rotate_and_reverse_so_every_arm_sits_at_the_same_mean_place():
    arms = ["a", "b", "c", "d", "e"]
    d = O.design(arms, 6, seed=3)
    assert d["order"] == "counterbalanced" and all(sorted(row) == arms for row in d["blocks"])
    for b in range(0, 6, 2):  # every odd block is the block before it reversed: a pair balances a steady drift
        assert d["blocks"][b + 1] == d["blocks"][b][::-1]
        places = {a: d["blocks"][b].index(a) + d["blocks"][b + 1].index(a) for a in arms}
        assert set(places.values()) == {len(arms) - 1}
    assert d["blocks"][2] != d["blocks"][0]  # rotated: the first place changes hands
    assert O.design(arms, 6, seed=3) == d and O.design(arms, 6, seed=4) != d  # seeded
    assert [r for r in O.design(["a", "b"], 4, seed=1)["blocks"]] in ([["a", "b"], ["b", "a"], ["b", "a"], ["a", "b"]],
                                                                      [["b", "a"], ["a", "b"], ["a", "b"], ["b", "a"]])
    grouped = O.segments(O.design(arms, 3, 0, "grouped"), arms)
    assert [(s.arm, s.block) for s in grouped[:4]] == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    with pytest.raises(ValueError):
        O.design(arms, 3, 0, "shuffled")


@pytest.mark.slow
def test_the_arms_take_turns_per_block_each_call_stores_its_block_and_slot(tmp_path):
    rep, calls = _run(tmp_path, _identical_arms())
    with Store(tmp_path / "results.sqlite") as store:
        design = store.order("r")
    assert design["order"] == "counterbalanced" and len(design["blocks"]) == ITERATIONS
    # calls in the order they were stored: one arm's block, then the other's, as the design says
    segment = calls["model"] + ":" + calls["block"].astype(str)
    runs = [(g["model"].iloc[0], int(g["block"].iloc[0]), len(g))
            for _, g in calls.groupby((segment != segment.shift()).cumsum())]
    assert runs == [(a, blk, N_ITEMS) for blk, row in enumerate(design["blocks"]) for a in row]
    assert (calls["block"] == calls["iteration"]).all()
    assert calls.groupby(["block", "model"])["slot"].first().unstack().to_numpy().tolist() == \
        [[row.index("a"), row.index("b")] for row in design["blocks"]]
    assert "counterbalanced" in rep.sheet("Speed").note


@pytest.mark.slow
def test_a_resumed_counterbalanced_run_keeps_its_order_and_stores_each_call_once(tmp_path):
    """The server goes down every few calls; each resume goes on in the stored order, and the rows equal
    those of an uninterrupted run (block and slot included)."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    _, reference = _run(whole, _identical_arms(), iterations=3, n_items=6)
    config = classify_config(broken, models=_identical_arms().replace("jitter: 0.1", "jitter: 0.1, down_after: 5"),
                             n_items=6, iterations=3)
    attempts = 0
    while True:
        attempts += 1
        assert attempts < 30, "the run never finished"
        try:
            with Store(broken / "results.sqlite") as store:
                Runner(load_config(config), store, run_id="r", progress=False).run()
            break
        except BackendUnavailable:
            continue
    assert attempts >= 4  # it was interrupted, and resumed, several times
    with Store(broken / "results.sqlite") as store:
        done = pd.DataFrame([dict(r) for r in store.calls("r")])
        assert store.run("r")["finished_at"] is not None
    key = ["model", "iteration", "item_id"]
    assert not done.duplicated(key).any() and len(done) == len(reference) == 2 * 3 * 6
    both = done.merge(reference, on=key, suffixes=("", "_ref"))
    for col in ("block", "slot", "position", "seed", "raw_text"):
        assert (both[col] == both[f"{col}_ref"]).all(), col


def test_a_bad_order_or_bandwidth_is_one_clear_message(tmp_path):
    config = classify_config(tmp_path, models=_identical_arms(), run_extra="  order: shuffled\n")
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    assert "order" in str(exc.value) and "counterbalanced" in str(exc.value)
    config = classify_config(tmp_path, models=_identical_arms(), extra="report:\n  memory_bandwidth_gbs: -3\n")
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    assert "memory_bandwidth_gbs" in str(exc.value)
    for bad in ("0", "-2", "often"):
        config = classify_config(tmp_path, models=_identical_arms(), run_extra=f"  speed_bench: {bad}\n")
        with pytest.raises(ConfigError) as exc:
            load_config(config)
        assert "speed_bench" in str(exc.value), bad
    config = classify_config(tmp_path, models=_identical_arms(), run_extra="  speed_bench: 3\n")
    assert load_config(config).run.speed_bench == 3


# --------------------------------------------------------------------------- must show: a drift halfway


@pytest.mark.slow
@pytest.mark.parametrize("seed", [100, 101, 102])
def test_a_slowdown_halfway_falls_on_both_arms_counterbalanced_and_on_one_grouped(tmp_path, seed):
    """Two identical arms on a machine that runs at half speed from halfway through the run (every
    timing x2 once half of all calls, warm-ups included, are answered). Counterbalanced (the default):
    the speed ratio's interval holds 1 and the drift warning fires, in the report and on the console.
    Grouped: the second arm ran entirely on the slow half; its speed comes out at 0.5x the first's
    (off by a factor 2, +-10%), "slower", with an interval that excludes 1, and no drift warning (each
    arm ran at one speed: the drift is invisible in that order)."""
    half = (2 * (N_ITEMS * ITERATIONS + 1)) // 2  # calls of both arms and their warm-ups, halved
    for folder in ("cb", "gr"):
        (tmp_path / folder).mkdir()
    default, _ = _run(tmp_path / "cb", _identical_arms(half), seed=seed)
    row = default.decision.set_index("model").loc["b"]
    assert row["speedup_ci95_low"] <= 1.0 <= row["speedup_ci95_high"], row[["speedup_vs_ref", "speedup_ci95_low",
                                                                           "speedup_ci95_high"]]
    assert row["speed_vs_ref"] == "not distinguishable" and 0.9 < row["speedup_vs_ref"] < 1.1
    assert "not distinguishable" in row["what_it_means"]
    drift = default.sheet("Speed").appendix[0][2].set_index("model")
    assert drift["moved"].all() and (drift["ratio"].between(1.8, 2.2)).all()  # late blocks twice as slow
    warnings = [line for line in verdict_lines(default) if line.startswith("DRIFT")]
    assert len(warnings) == 2 and all("moved 1." in w or "moved 2." in w for w in warnings)
    assert default.sheet("Decision").lines[1].startswith("DRIFT")  # said first, where the reader starts

    grouped, _ = _run(tmp_path / "gr", _identical_arms(half), order="grouped", seed=seed)
    row = grouped.decision.set_index("model").loc["b"]
    assert 0.45 < row["speedup_vs_ref"] < 0.55  # off by a factor 2: the slowdown landed on b alone
    assert row["speedup_ci95_high"] < 1 and row["speed_vs_ref"] == "slower"
    assert not [line for line in verdict_lines(grouped) if line.startswith("DRIFT")]
    assert any("Order grouped" in line for line in grouped.speed_lines)


@pytest.mark.slow
def test_without_a_drift_identical_arms_are_not_distinguishable_and_nothing_warns(tmp_path):
    rep, _ = _run(tmp_path, _identical_arms(), seed=100)
    row = rep.decision.set_index("model").loc["b"]
    assert row["speed_vs_ref"] == "not distinguishable"
    assert not rep.sheet("Speed").appendix[0][2]["moved"].any()
    assert not [line for line in rep.speed_lines if line.startswith("DRIFT")]


# --------------------------------------------------------------------------- must show: noisy timings


def _block_ratios(ratios, n_items: int = 40, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """(2 models, items, blocks) log seconds: b's ratio to a differs block by block (``ratios``), each call
    with a little noise of its own."""
    rng = np.random.default_rng(seed)
    items = rng.normal(0, 0.3, (n_items, 1))
    a = items + rng.normal(0, noise, (n_items, len(ratios)))
    b = items + np.log(ratios)[None, :] + rng.normal(0, noise, (n_items, len(ratios)))
    return np.stack([a, b])


def test_the_interval_of_a_speed_ratio_widens_with_noisy_timings():
    """Four repeats of one comparison whose ratio came out 1.12x, 1.3x, 1.5x and 1.83x (a busy machine):
    the paired t over items of each item's mean over its repeats gave p = 1e-40 (the p = 7e-18 of the
    issue); clustered by block, the interval spans the repeats and p is no smaller than 1e-3."""
    y = _block_ratios([1.12, 1.3, 1.5, 1.83])
    old = P.paired(y[1].mean(-1) - y[0].mean(-1))
    assert old["p"] < 1e-30
    r = SP.ratio(y[0], y[1])
    assert r["p"] > 1e-3 and r["df"] <= 3
    assert r["ratio_low"] < 1.12 and r["ratio_high"] > 1.83  # the interval holds every repeat
    calm = SP.ratio(*_block_ratios([1.4, 1.4, 1.4, 1.4]))  # the same mean ratio, repeats that agree
    assert calm["ratio_low"] > 1.35 and calm["ratio_high"] < 1.45 and calm["p"] < 1e-6
    width = lambda x: np.log(x["ratio_high"] / x["ratio_low"])  # noqa: E731
    assert width(r) > 10 * width(calm)


@pytest.mark.slow
def test_the_report_says_not_distinguishable_for_repeats_that_vary(tmp_path):
    """The same through a stored run: b's calls are 1.12-1.83x a's block by block; the Comparisons' p and
    the Decision's interval follow, and the Decision calls the speed not distinguishable."""
    from benchmark.synthetic import SynthModel, write_db

    db = tmp_path / "r.sqlite"
    write_db(db, [SynthModel("a", family="f", quant="F16"), SynthModel("b", family="f", quant="Q8_0")], 40, 4,
             seed=1, run_id="r")
    con = sqlite3.connect(db)
    factor = {0: 1.12, 1: 1.3, 2: 1.5, 3: 1.83}
    items = sorted({r[0] for r in con.execute("SELECT item_id FROM calls")})
    rng = np.random.default_rng(0)
    for cid, model, it, item in con.execute("SELECT id, model, iteration, item_id FROM calls").fetchall():
        base = (1.0 + items.index(item) % 5 * 0.2) * rng.lognormal(0, 0.02)  # items differ; calls a little
        con.execute("UPDATE calls SET wall_seconds=? WHERE id=?", (base * (factor[it] if model == "b" else 1), cid))
    con.commit()
    con.close()
    with Store(db) as store:
        rep = rpt.build(store, "r")
    cmp = rep.versus.set_index(["candidate", "metric"]).loc[("b", "s_per_sample")]
    assert cmp["p"] > 1e-3 and cmp["ci95_low"] < 1.12 and cmp["ci95_high"] > 1.83
    row = rep.decision.set_index("model").loc["b"]
    assert row["speedup_ci95_low"] < 1 / 1.83 and row["speedup_ci95_high"] > 1 / 1.12


# --------------------------------------------------------------------------- the statistics


@pytest.mark.slow
def test_two_way_clustering_is_statsmodels_cluster_robust_error():
    import statsmodels.api as sm

    rng = np.random.default_rng(5)
    d = rng.normal(0, 0.1, (25, 1)) + rng.normal(0, 0.1, (1, 4)) + rng.normal(0, 0.05, (25, 4))
    d[[2, 7], [1, 3]] = np.nan  # a failed call or two
    r = SP.two_way(d)
    ok = ~np.isnan(d)
    items, blocks = np.nonzero(ok)
    fit = {name: sm.OLS(d[ok], np.ones(ok.sum())).fit(cov_type="cluster", cov_kwds={"groups": g}).bse[0]
           for name, g in (("two", np.column_stack([items, blocks])), ("item", items), ("block", blocks))}
    assert r["two_way"] and r["se"] == pytest.approx(fit["two"])
    assert np.sqrt(r["v_item"]) == pytest.approx(fit["item"]) and np.sqrt(r["v_block"]) == pytest.approx(fit["block"])
    assert 1 <= r["df"] <= 3
    assert r["p"] == pytest.approx(2 * ss.t.sf(abs(r["mean"] / r["se"]), r["df"]))
    one = SP.two_way(d[:, :1])  # one block: items only, as the paired t over items
    t = ss.ttest_1samp(d[:, 0], 0)
    assert one["p"] == pytest.approx(t.pvalue) and one["df"] == 24


SCENARIOS = {"noise only": (0.0, 0.0, 0.1), "items differ": (0.2, 0.0, 0.1), "blocks differ": (0.0, 0.2, 0.1),
             "both differ": (0.1, 0.1, 0.05)}


@pytest.mark.parametrize("blocks", [3, 4, 6])
def test_false_positives_of_the_speed_ratio_by_simulation(blocks):
    """Identical arms whose per-call log ratios vary by item, by block (a drift that falls on one arm more
    in some blocks), both, or neither: 3,000 simulated runs of 30 items each. The clustered ratio keeps
    its false positives at 7% or below at alpha 0.05; the paired t over items of per-item means calls
    the blocks' variation a difference in most runs."""
    rng = np.random.default_rng(blocks)
    S, I = 3000, 30
    for name, (sd_item, sd_block, sd_cell) in SCENARIOS.items():
        d = (rng.normal(0, sd_item, (S, I, 1)) + rng.normal(0, sd_block, (S, 1, blocks))
             + rng.normal(0, sd_cell, (S, I, blocks)))
        fp = np.mean(SP.two_way(d)["p"] < 0.05)
        naive = np.mean(P.paired(d.mean(-1))["p"] < 0.05)
        assert fp <= 0.07, (name, fp)
        if name == "blocks differ":
            assert naive > 0.5, naive
        # and the test has power: a true 10% speed difference under the same noise
        power = np.mean(SP.two_way(d + np.log(1.1))["p"] < 0.05)
        if sd_block == 0:
            assert power > 0.5, (name, power)


@pytest.mark.slow
def test_drift_fires_on_a_move_and_keeps_quiet_on_noise():
    rng = np.random.default_rng(2)
    flat = rng.normal(0, 0.1, (2, 30, 4))
    moved = flat.copy()
    moved[0][:, 2:] += np.log(1.5)  # model 0 half again as slow in its late blocks
    rows = {r["model"]: r for r in SP.drift(moved, ["m0", "m1"], tolerance=0.1)}
    assert rows["m0"]["moved"] and 1.4 < rows["m0"]["ratio"] < 1.6 and not rows["m1"]["moved"]
    # noise alone: moved in at most 5% of 1,000 simulated runs (Holm across the two models)
    hits = sum(any(r["moved"] for r in SP.drift(rng.normal(0, 0.1, (2, 30, 4)), ["a", "b"], tolerance=0.0))
               for _ in range(1000))
    assert hits <= 60
    small = flat.copy()
    small[0][:, 2:] += np.log(1.05)  # significant, but within the 10% tolerance
    assert not {r["model"]: r for r in SP.drift(small, ["m0", "m1"], tolerance=0.1)}["m0"]["moved"]
    assert SP.drift(flat[:, :, :1], ["a", "b"])[0]["blocks"] == 1  # one block: nothing to compare


# --------------------------------------------------------------------------- the llama-bench block


@pytest.mark.slow
def test_the_speed_sheet_gives_the_share_of_the_bandwidth_bound(tmp_path):
    rep, _ = _run(tmp_path, _identical_arms(), iterations=2, n_items=4)
    bench = [BenchRow(run_id="r", model="a", test=t, n_prompt=p, n_gen=g, n_depth=d, reps=5, avg_ts=ts, stddev_ts=sd,
                      weights_bytes_per_token=200 * 2**20, kv_bytes_per_token=kv, depth_requested=300,
                      engine_json=json.dumps({"n_threads": 2, "n_batch": 512}))
             for t, p, g, d, ts, sd, kv in (("pp512", 512, 0, 0, 400.0, 8.0, 0), ("tg128", 0, 128, 0, 50.0, 1.0, 0),
                                            ("tg128 @ d300", 0, 128, 300, 40.0, 1.5, 50 * 2**20))]
    with Store(tmp_path / "results.sqlite") as store:
        store.add_bench(bench)
        rep = rpt.build(store, "r", settings={"memory_bandwidth_gbs": 20.0})
    table = rep.sheet("Speed").table.set_index("test")
    assert np.isnan(table.loc["pp512", "share_of_bound"])  # a prompt is compute-bound: no bandwidth bound
    assert table.loc["tg128", "bound_tok_s"] == pytest.approx(20e9 / (200 * 2**20))
    assert table.loc["tg128", "share_of_bound"] == pytest.approx(50.0 / (20e9 / (200 * 2**20)))
    assert table.loc["tg128 @ d300", "bound_tok_s"] == pytest.approx(20e9 / (250 * 2**20))
    line = next(x for x in verdict_lines(rep) if x.startswith("a: llama-bench"))
    assert "pp512 400.0 +- 8.0 tok/s, tg128 50.0 +- 1.0 tok/s (52% of the 95 tok/s bound)" in line
    assert any("20.0 GB/s (declared" in x for x in verdict_lines(rep))


@pytest.mark.slow
def test_merged_shards_keep_the_order_the_bandwidth_and_the_speed_block(tmp_path):
    from benchmark.run.merge import merge

    files = []
    for i in (1, 2):
        folder = tmp_path / f"s{i}"
        folder.mkdir()
        config = classify_config(folder, models=_identical_arms(), n_items=4, iterations=2)
        with Store(folder / "results.sqlite") as store:
            Runner(load_config(config), store, run_id="r", progress=False, shard=(i, 2, "item")).run()
            store.set_bandwidth("r", 12.5 * i, {"method": "test"})
            store.add_bench([BenchRow(run_id="r", model="a", test="tg128", n_prompt=0, n_gen=128, n_depth=0, reps=5,
                                      avg_ts=10.0 * i)])
        files.append(str(folder / "results.sqlite"))
    merge(files, tmp_path / "all.sqlite")
    with Store(tmp_path / "all.sqlite") as store:
        assert store.order("r")["order"] == "counterbalanced"
        assert store.bandwidth("r")[0] == 12.5
        assert sorted(b.avg_ts for b in store.bench_rows("r")) == [10.0, 20.0]


@pytest.mark.slow
def test_the_real_engine_loads_once_per_block_and_measures_its_block_once(tmp_path, embedded_gguf, monkeypatch):
    """Two in-process models on the real engine: counterbalanced, each is loaded (and warmed up) once per
    iteration block and freed before the other's block (kept over two of its blocks in a row); its llama-bench block (shortened here: pp64,
    tg16, one repetition) is measured once, at its first load, at the depth of its prompts; the
    Speed sheet shows it with the share of the memory-bandwidth bound the run measured."""
    from benchmark.run import bench
    from tests.conftest import write_config

    monkeypatch.setattr(bench, "N_PROMPT", 64)
    monkeypatch.setattr(bench, "N_GEN", 16)
    monkeypatch.setattr(bench, "REPS", 2)
    config = write_config(tmp_path, embedded_gguf, models=[("m-a", "few_shot"), ("m-b", "zero_shot")], iterations=2,
                          articles=2, extra="")
    config.write_text(config.read_text().replace("num_predict: 96", "num_predict: 24")
                      .replace("speed_bench: false", "speed_bench: true"))
    cfg = load_config(config)
    assert cfg.run.speed_bench is True
    with Store(tmp_path / "results.sqlite") as store:
        Runner(cfg, store, run_id="r", progress=False).run()
        loads = [l.model for l in store.loads("r")]
        rows = store.bench_rows("r")
        assert store.bandwidth("r")[0] > 0
        rep = rpt.build(store, "r")
        design = store.order("r")
    # one load per arm and block, in the block order; an arm whose next block follows at once stays loaded
    sequence = [a for row in design["blocks"] for a in row]
    assert loads == [a for k, a in enumerate(sequence) if k == 0 or sequence[k - 1] != a]
    assert len(loads) == 3 and len(set(loads)) == 2  # AB BA: three loads, where grouped makes two
    assert sorted({(b.model, b.test.split(" ")[0]) for b in rows}) == [(m, t) for m in ("m-a", "m-b")
                                                                       for t in ("pp64", "tg16")]
    deep = {b.model: b for b in rows if b.n_depth}
    assert set(deep) == {"m-a", "m-b"} and deep["m-a"].depth_requested > deep["m-b"].depth_requested  # few-shot: longer
    assert all(b.reps == 2 and b.avg_ts > 0 and b.weights_bytes_per_token > 0 for b in rows)
    table = rep.sheet("Speed").table
    tg = table[table["test"] == "tg16"]
    assert (tg["share_of_bound"] > 0).all() and (tg["share_of_bound"] < 1.5).all()
