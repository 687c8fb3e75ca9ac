"""`shootout plan`: from a pilot run, how many items and iterations a study needs to decide
(``benchmark.report.plan``), printed as a table per comparison."""

from __future__ import annotations

from pathlib import Path


def run_plan(console, config: Path | None, db: Path | None, run_id: str | None, metric: str | None,
             effect: float | None, goal: str, assume: float, alpha: float | None, power: float | None,
             iterations: str, pairs) -> None:
    from rich.markup import escape
    from rich.table import Table

    from benchmark.report.plan import make_plan
    from core.errors import ShootoutError
    from shootout import reporting

    try:
        its = tuple(int(x) for x in iterations.split(",") if x.strip())
    except ValueError:
        raise ShootoutError(f"--iterations '{iterations}' is not a list of whole numbers", "write e.g. 1,2,3,5,10")
    if not its or min(its) < 1:
        raise ShootoutError("--iterations needs whole numbers of at least 1", "write e.g. 1,2,3,5,10")
    with reporting.store_for(config, db) as store:
        rid = reporting.pick_run(store, run_id)
        plan = make_plan(store, rid, metric=metric, effect=effect, goal=goal, assume=assume, alpha=alpha,
                         power=power, iterations=its, pairs=pairs)
    for line in plan.lines:
        console.print(escape(line))
    for (ref, cand), g in plan.designs.groupby(["reference", "candidate"], sort=False):
        table = Table(title=escape(f"{cand} vs {ref}: {plan.goal}, {plan.metric}, effect {plan.effect:g}"))
        for col in ("iterations", "sd of per-item diff", "items", "calls per model", "hours (all models)"):
            table.add_column(col, justify="right")
        for r in g.itertuples(index=False):
            finite = r.items == r.items and r.items != float("inf")
            table.add_row(str(r.iterations), f"{r.sd_diff:.3f}", f"{int(r.items):,}" if finite else "never",
                          f"{int(r.calls_per_model):,}" if finite else "-",
                          f"{r.hours_all_models:.1f}" if finite else "-")
        console.print(table)
