"""The `shootout` command. Heavy libraries are imported inside the commands that need them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from core.errors import ShootoutError

app = typer.Typer(help="Fine-tune, export to a GGUF quant ladder, and benchmark local models with sound statistics.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

CONFIG_OPT = typer.Option(Path("config.yaml"), "--config", "-c", help="the registry of models and settings")


def _console():
    """stderr console; when stderr is not a terminal, wide enough that tables do not wrap. Strings
    are printed as they are (no markup: they quote URLs, server errors and model output); style
    goes in rich Text (core.console.styled)."""
    from core.console import make_console

    return make_console(width=None if sys.stderr.isatty() else 160)


def _run(cfg, run_id: str | None, resume: bool, models: list[str] | None, progress: bool,
         shard: tuple[int, int, str] | None = None) -> str:
    from benchmark.run.runner import Runner
    from benchmark.store import Store
    from benchmark.report.console import model_summary, render_table
    from core.console import styled
    from core.errors import DiskFull

    console = _console()
    db = cfg.resolve(cfg.run.database)
    with Store(db) as store:
        if run_id is None and resume:
            for rid in reversed(store.run_ids()):
                row = store.run(rid)
                if row["finished_at"] is None and row["config_text"] == cfg.text:
                    run_id = rid
                    break
        runner = Runner(cfg, store, run_id=run_id, console=console, progress=progress, models=models, shard=shard)
        try:
            result = runner.run()
        except KeyboardInterrupt:  # a second Ctrl-C: the call in flight is abandoned, nothing half-stored
            console.print(f"stopped at once: the call in flight was not stored. Resume with `shootout run --config "
                          f"{cfg.source} --run-id {runner.run_id}`")
            raise typer.Exit(130) from None
        except DiskFull as exc:
            again = (f"resume with `shootout run --config {cfg.source} --run-id {runner.run_id}`" if runner.run_id
                     else "run the command again")
            raise DiskFull(exc.path, exc.message, f"free some space on the disk holding {db}, then {again}") from None
        task, rows = model_summary(store, result.run_id)
        console.print(render_table(task, rows, f"run {result.run_id} ({store.count_calls(result.run_id)} calls in {db})"))
    if result.too_long:
        worst = max(t for _, _, t, _ in result.too_long)
        console.print(f"{len(result.too_long)} call(s) not sent: the prompt did not fit the context (up to {worst} "
                      f"tokens); they are stored as failed calls. Raise the context (run.num_ctx, or the server's own context "
                      f"for an OpenAI-compatible server) to ask them.")
    if result.stopped:
        console.print(styled(("stopped", "yellow"), f" after the call in flight: {result.stored} calls stored this "
                             f"time; resume with `shootout run --config {cfg.source} --run-id {result.run_id}`"))
        raise typer.Exit(130)
    return result.run_id


@app.command()
def run(config: Path = CONFIG_OPT,
        run_id: Optional[str] = typer.Option(None, "--run-id", help="name the run, or resume the run of this id"),
        resume: bool = typer.Option(False, "--resume", help="resume the latest unfinished run of this config"),
        model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="only these models (repeatable)"),
        shard: Optional[str] = typer.Option(None, "--shard", help="i/n: this box runs its share of the grid "
                                                                 "(combine the shards with `shootout merge`)"),
        shard_by: str = typer.Option("model", "--shard-by", help="model | item"),
        progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Run N iterations of the task over every registered model and store every call."""
    from benchmark.config import load_config

    _run(load_config(config), run_id, resume, model, progress, _shard(shard, shard_by))


def _shard(text: Optional[str], by: str):
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
        assert 1 <= i <= n
    except (ValueError, AssertionError):
        raise ShootoutError(f"--shard '{text}' is not i/n", "e.g. --shard 1/2 on one box and --shard 2/2 on the other"
                            ) from None
    if by not in ("model", "item"):
        raise ShootoutError(f"--shard-by '{by}'", "use model or item")
    return i, n, by


@app.command()
def merge(sources: List[str] = typer.Argument(..., help="results files of the shards (FILE or FILE:RUN_ID)"),
          out: Path = typer.Option(..., "--out", help="the merged results file (new)"),
          run_id: Optional[str] = typer.Option(None, "--run-id", help="the merged run's id (default: the first's)")):
    """Combine the shards of one grid, run on several boxes, into one run that reports like any other."""
    from benchmark.run.merge import merge as do_merge

    res = do_merge(sources, out, run_id)
    typer.echo(f"{out}: run {res.run_id}, {res.calls} calls from {len(res.sources)} files"
               + ("" if res.finished else " (not every call of the grid yet: resume a shard, then merge again)"))


@app.command()
def validate(config: Path = CONFIG_OPT):
    """Check config.yaml and report every problem found (exit code 2 if any)."""
    from benchmark.config import load_config

    cfg = load_config(config)
    extra = ""
    if not isinstance(cfg.task, str):  # a classification task: its data must read too
        from benchmark import data
        from benchmark.tasks import task_for

        items = task_for(cfg).all_items()
        counts = data.summarize(items)["splits"]
        extra = "; items " + ", ".join(f"{s} {c['items']}" for s, c in counts.items())
    typer.echo(f"{config}: ok ({len(cfg.models)} models, {len(cfg.compare)} comparison pairs{extra})")


@app.command()
def demo(out: Optional[Path] = typer.Option(None, "--out", help="folder for the ladder, config and results "
                                                               "(default: demo, or demo-<task>)"),
         task: str = typer.Option("sentiment", "--task", help="sentiment (the news ladder), or an example of "
                                                            "examples/: spam, sst2, stance, sarcasm, japanese_news"),
         iterations: Optional[int] = typer.Option(None, min=1, help="iterations per model (default: 3, or the "
                                                                    "example's)"),
         articles: Optional[int] = typer.Option(None, "--articles", "--items", min=1,
                                                help="use only N items (the first N snapshot articles)"),
         progress: bool = typer.Option(True, "--progress/--no-progress")):
    """The whole loop offline on the embedded Gemma 3 270M: the sentiment ladder (F16/Q8_0/Q5_K_M/Q4_K_M),
    or one of the classification examples; run, table, workbook and heatmaps."""
    from shootout import demo as demos

    console = _console()
    if task == "sentiment":
        out = out or Path("demo")
        out.mkdir(parents=True, exist_ok=True)
        config_path = demos.prepare(out, iterations or 3, articles, log=console.print)
    else:
        out = out or Path(f"demo-{task}")
        config_path = demos.prepare_example(task, out, iterations, articles)
    console.print(f"demo config: {config_path}")
    run_id = _run_and_report(config_path, progress)
    tail = f"; seed-format JSON: `shootout export-json --config {config_path}`" if task == "sentiment" else ""
    console.print(f"results: {out / 'results.sqlite'} (run {run_id}){tail}")


@app.command("finetune-demo")
def finetune_demo(out: Path = typer.Option(Path("finetune-demo"), "--out"),
                  steps: int = typer.Option(30, "--steps", help="LoRA training steps"),
                  iterations: int = typer.Option(2, "--iterations", min=1),
                  progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Fine-tune the embedded Gemma 3 270M on the news snapshot, export it, benchmark base vs fine-tune."""
    from shootout.finetune_demo import prepare

    console = _console()
    config_path = prepare(out, steps, iterations, console)
    console.print(f"finetune-demo config: {config_path}")
    _run_and_report(config_path, progress)


def _run_and_report(config_path: Path, progress: bool) -> str:
    """Run (resuming an unfinished run of the same config), then the workbook and heatmaps."""
    from benchmark.config import load_config
    from benchmark.store import Store
    from shootout import reporting

    cfg = load_config(config_path)
    run_id = _run(cfg, None, True, None, progress)
    with Store(cfg.resolve(cfg.run.database)) as store:
        reporting.write(store, run_id, cfg.resolve(cfg.output.reports_dir), cfg.resolve(cfg.output.heatmaps_dir),
                        _console())
    return run_id


def _writable_folder(path: Path, option: str) -> None:
    """A folder option names a folder, or a place where one can be made: not a file."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == path else f" ({p} is a file)"
                raise ShootoutError(f"{option} {path} is not a folder{where}",
                                    f"name a folder for {option} (it is created if missing)")
            return


REPORT_CONFIG_OPT = typer.Option(None, "--config", "-c", help="the config whose results database and output folders "
                                                              "to use (default: config.yaml)")
COMPARE_OPT = typer.Option(None, "--compare", help="a pair REFERENCE,CANDIDATE to compare (repeatable; default: "
                                                   "the pairs the run was started with)")


def _pairs(compare: Optional[List[str]]):
    if not compare:
        return None
    out = []
    for c in compare:
        parts = [p.strip() for p in c.split(",")]
        if len(parts) != 2 or not all(parts):
            raise ShootoutError(f"--compare '{c}' is not a pair", "write it as REFERENCE,CANDIDATE")
        out.append(tuple(parts))
    return out


@app.command()
def report(config: Optional[Path] = REPORT_CONFIG_OPT,
           db: Optional[Path] = typer.Option(None, "--db", help="results database (default: the config's)"),
           run_id: Optional[str] = typer.Option(None, "--run-id", help="default: the latest run"),
           out: Optional[Path] = typer.Option(None, "--out", help="folder for the workbook and CSVs"),
           heatmaps: bool = typer.Option(False, "--heatmaps", help="also draw the heatmaps"),
           compare: Optional[List[str]] = COMPARE_OPT):
    """Metrics, paired tests and the verdicts: reports/<run>.xlsx plus one CSV per table."""
    from shootout import reporting

    reports_dir, heatmaps_dir = reporting.output_dirs(config, db)
    with reporting.store_for(config, db) as store:
        reporting.write(store, run_id, out or reports_dir, heatmaps_dir if heatmaps else None, _console(),
                        _pairs(compare))


@app.command("heatmaps")
def heatmaps_cmd(config: Optional[Path] = REPORT_CONFIG_OPT,
                 db: Optional[Path] = typer.Option(None, "--db", help="results database (default: the config's)"),
                 run_id: Optional[str] = typer.Option(None, "--run-id", help="default: the latest run"),
                 out: Optional[Path] = typer.Option(None, "--out", help="folder for the PNG files")):
    """PNG heatmaps by task kind: items x models and family x quant grids; confusion matrices for labels."""
    from benchmark.report.charts import write_heatmaps
    from shootout import reporting

    _, heatmaps_dir = reporting.output_dirs(config, db)
    with reporting.store_for(config, db) as store:
        rid = reporting.pick_run(store, run_id)
        rep = reporting.build(store, rid)
    pngs = write_heatmaps(rep, (out or heatmaps_dir) / rid)
    typer.echo(f"wrote {len(pngs)} heatmaps to {(out or heatmaps_dir) / rid}/")


@app.command()
def plan(config: Optional[Path] = REPORT_CONFIG_OPT,
         db: Optional[Path] = typer.Option(None, "--db", help="the pilot run's results database (default: the "
                                                                "config's)"),
         run_id: Optional[str] = typer.Option(None, "--run-id", help="default: the latest run"),
         effect: Optional[float] = typer.Option(None, "--effect", help="the difference to detect, or the margin, in "
                                                                       "the metric's units (0.05 MAE; 0.02 = 2 "
                                                                       "accuracy points); default: the run's margin"),
         metric: Optional[str] = typer.Option(None, "--metric", help="mae (default for value tasks), sign_accuracy, "
                                                                     "mean_value, valid_rate; accuracy (label tasks)"),
         goal: str = typer.Option("difference", "--goal", help="difference | non-inferiority | equivalence"),
         assume: float = typer.Option(0.0, "--assume-diff", help="non-inferiority/equivalence: the true difference "
                                                                 "you expect (positive = candidate worse)"),
         alpha: Optional[float] = typer.Option(None, "--alpha", help="default: the run's report.alpha (0.05)"),
         power: Optional[float] = typer.Option(None, "--power", help="default: the run's report.power (0.8)"),
         iterations: str = typer.Option("1,2,3,5,10", "--iterations", help="iterations per item to consider"),
         compare: Optional[List[str]] = COMPARE_OPT):
    """How many items and iterations to run: from a pilot run's variance, per comparison."""
    from shootout.plan import run_plan

    run_plan(_console(), config, db, run_id, metric, effect, goal, assume, alpha, power, iterations, _pairs(compare))


@app.command()
def register(target: str = typer.Argument(..., help="a GGUF file, a folder of GGUFs (a quant ladder), an Ollama "
                                                    "tag, or a served model name"),
             config: Path = CONFIG_OPT,
             backend: str = typer.Option("llamacpp", help="llamacpp | ollama | openai"),
             name: Optional[str] = typer.Option(None, help="model name (default: <family>-<quant>)"),
             family: Optional[str] = typer.Option(None, help="model family (default: from the file name)"),
             quant: Optional[str] = typer.Option(None, help="quant level (default: from the file name)"),
             prompt_style: str = typer.Option("few_shot", help="few_shot | zero_shot"),
             chat_template: Optional[str] = typer.Option(None, help="fallback chat template for GGUFs without one"),
             system_prompt: Optional[str] = typer.Option(None, help="zero_shot: the fine-tune's system prompt"),
             base_url: Optional[str] = typer.Option(None, help="openai: the server's base URL"),
             dry_run: bool = typer.Option(False, "--dry-run", help="print the change, write nothing")):
    """Add a model, or a whole quant ladder found in a folder, to config.yaml (comments kept)."""
    from benchmark.run import entries as registry

    from benchmark.backends import BACKENDS

    if backend not in BACKENDS:
        raise ShootoutError(f"unknown backend '{backend}'", f"use one of {', '.join(BACKENDS)}")
    if not config.is_file():
        raise ShootoutError(f"config not found: {config}", "pass --config PATH")
    entries = registry.entries_for(target, config_dir=config.parent, backend=backend, name=name, family=family,
                                   quant=quant, prompt_style=prompt_style, chat_template=chat_template,
                                   system_prompt=system_prompt, base_url=base_url)
    diff = registry.register(config, entries, dry_run=dry_run)
    typer.echo(diff, nl=False)
    verb = "would add" if dry_run else "added"
    typer.echo(f"{verb} {len(entries)} model(s): {', '.join(e['name'] for e in entries)}")


def _declared_formats(config: Path) -> dict:
    """GGUF path -> chat family, from config entries whose options.chat_template names a family."""
    if not config.is_file():
        return {}
    from benchmark.config import load_config
    from formats.chat import FAMILIES

    cfg = load_config(config, check_files=False)
    from benchmark.backends import spec_of

    return {Path(cfg.resolve(m.path)).resolve(): m.options.chat_template for m in cfg.models
            if spec_of(m).where == "path" and m.path and m.options.chat_template in FAMILIES}


def _ollama_name(spec, prefix: str | None) -> str:
    """Ollama model name for a ladder rung: ``<family>:<quant>`` in lower case."""
    from core.naming import family_from_filename, quant_from_filename

    fam = prefix or family_from_filename(spec.gguf)
    quant = quant_from_filename(spec.gguf) or "latest"
    return f"{fam}:{quant}".lower()


OLLAMA_HOSTS_OPT = typer.Option(None, "--ollama-host", help="with --ollama-create: the Ollama host(s) (repeatable; "
                                                           "default: OLLAMA_HOST)")


def _create_on_hosts(items, hosts: Optional[List[str]]) -> None:
    """Create the models on every host; each blob is uploaded once per host (a host that has it is skipped)."""
    from export.ollama_create import create_all

    for host in hosts or [None]:
        done = create_all(items, host=host, console=_console())
        typer.echo(f"created {', '.join(n for n, _, _ in items)} in Ollama at {done['host']} "
                   f"({len(done['uploaded'])} uploaded, {len(done['skipped'])} already there)")


@app.command("modelfile")
def modelfile_cmd(ggufs: List[Path] = typer.Argument(..., help="GGUF files (a Modelfile is written beside each)"),
                  chat_format: Optional[str] = typer.Option(None, "--chat-format",
                                                            help="llama3 | gemma | mistral | phi3 | chatml "
                                                                 "(default: from the GGUF)"),
                  system: Optional[str] = typer.Option(None, "--system", help="SYSTEM prompt (zero-shot fine-tunes)"),
                  temperature: float = typer.Option(0.0, "--temperature"),
                  num_ctx: int = typer.Option(4096, "--num-ctx"),
                  ollama_create: bool = typer.Option(False, "--ollama-create",
                                                     help="also create each model in Ollama (OLLAMA_HOST)"),
                  ollama_host: Optional[List[str]] = OLLAMA_HOSTS_OPT,
                  ollama_name: Optional[str] = typer.Option(None, "--ollama-name",
                                                            help="model name before ':<quant>' (default: from the file)"),
                  config: Path = typer.Option(Path("config.yaml"), "--config", "-c",
                                              help="a model registered here with options.chat_template set to a "
                                                   "family name takes that family")):
    """Write an Ollama Modelfile for each GGUF (TEMPLATE, stop tokens, parameters), optionally create them."""
    from export import modelfile
    from export.ollama_create import sha256_file

    declared = _declared_formats(config) if chat_format is None else {}
    specs = [modelfile.write(g, chat_format=chat_format or declared.get(g.resolve()), system=system,
                             temperature=temperature, num_ctx=num_ctx)
             for g in ggufs]
    for spec in specs:
        typer.echo(f"{spec.path}  chat format {spec.family} ({spec.family_source}); template check: "
                   f"{spec.template_check}")
    if ollama_create:
        _create_on_hosts([(_ollama_name(s, ollama_name), s, sha256_file(s.gguf)) for s in specs], ollama_host)


@app.command()
def doctor(config: Path = CONFIG_OPT,
           model: Optional[List[str]] = typer.Option(None, "--model", "-m",
                                                     help="an Ollama model of config.yaml (repeatable; default: all)"),
           tag: Optional[str] = typer.Option(None, "--tag", help="check this Ollama tag instead of the config's models"),
           modelfile: Optional[Path] = typer.Option(None, "--modelfile",
                                                    help="the Modelfile the model was created from (default: the one "
                                                         "its export manifest names)"),
           host: Optional[str] = typer.Option(None, "--host", help="the Ollama server (default: OLLAMA_HOST)"),
           num_ctx: Optional[int] = typer.Option(None, "--num-ctx", min=256, help="context to load with (default: "
                                                                                  "the config's)")):
    """Check an Ollama host end to end: version, template and parameters against the Modelfile, context
    allocated, share in GPU memory, one smoke call with the task's schema (exit code 2 if a check fails)."""
    from shootout.doctor import main as doctor_main

    raise typer.Exit(doctor_main(config, model, tag, modelfile, host, num_ctx, _console()))


@app.command("export")
def export_cmd(src: Path = typer.Argument(..., help="a Hugging Face model folder or a GGUF file"),
               name: Optional[str] = typer.Option(None, "--name", help="file prefix (default: from the source)"),
               out: Optional[Path] = typer.Option(None, "--out", help="output folder (default: exports/<name>)"),
               quants: str = typer.Option(",".join(("Q8_0", "Q5_K_M", "Q4_K_M")), "--quants",
                                          help="comma-separated llama.cpp types below F16"),
               imatrix: Optional[Path] = typer.Option(None, "--imatrix", help="importance-matrix file"),
               chat_format: Optional[str] = typer.Option(None, "--chat-format",
                                                         help="llama3 | gemma | mistral | phi3 | chatml "
                                                              "(default: from the GGUF)"),
               system: Optional[str] = typer.Option(None, "--system", help="SYSTEM prompt for the Modelfiles"),
               num_ctx: int = typer.Option(4096, "--num-ctx"),
               verify: bool = typer.Option(True, "--verify/--no-verify", help="parity, KLD and smoke checks"),
               kld_prompts: int = typer.Option(6, "--kld-prompts", min=0, help="task prompts for the KLD check"),
               parity_prompts: int = typer.Option(3, "--parity-prompts", min=1,
                                                  help="task prompts for the parity check of a Hugging Face "
                                                       "source (every position of each is compared)"),
               parity_max_diff: float = typer.Option(0.01, "--parity-max-diff",
                                                     help="parity: largest logit difference allowed, as a share "
                                                          "of the largest logit"),
               parity_min_top1: float = typer.Option(0.99, "--parity-min-top1",
                                                     help="parity: smallest share of positions with the same top "
                                                          "token"),
               ollama_create: bool = typer.Option(False, "--ollama-create", help="create every level in Ollama"),
               ollama_host: Optional[List[str]] = OLLAMA_HOSTS_OPT,
               register_: bool = typer.Option(False, "--register", help="add the ladder to config.yaml"),
               config: Path = CONFIG_OPT,
               prompt_style: str = typer.Option("few_shot", "--prompt-style", help="for --register")):
    """Export a model to an F16 GGUF and a verified quant ladder with Modelfiles and a manifest."""
    from export.pipeline import ExportOptions, print_summary, run_export

    if register_ and not config.is_file():
        raise ShootoutError(f"config not found: {config}", "pass --config PATH (or leave out --register)")
    if out is not None:
        _writable_folder(out, "--out")
    console = _console()
    task, items = None, []
    if verify and config.is_file():  # the checks ask the config's task (financial sentiment otherwise)
        task, cfg = _task_of(config)
        items = task.load_items(cfg) if cfg is not None else []
    opts = ExportOptions(name=name, out=out, quants=tuple(q for q in quants.split(",") if q.strip()),
                         imatrix=imatrix, chat_format=chat_format, system=system, num_ctx=num_ctx,
                         verify=verify, kld_prompts=kld_prompts, parity_prompts=parity_prompts,
                         max_rel_logit_diff=parity_max_diff,
                         min_top1=parity_min_top1, task=task, items=items)
    res = run_export(src, opts, console=console)
    m = res.manifest
    print_summary(console, res)
    tags = {q: f"{res.name}:{q}".lower() for q in res.specs}
    if ollama_create:
        _create_on_hosts([(tags[q], spec, m["files"][q]["sha256"]) for q, spec in res.specs.items()], ollama_host)
    if register_:
        from benchmark.backends import llamacpp, ollama_backend
        from benchmark.run import entries as registry
        from core.naming import relpath

        entries = []
        for q, spec in res.specs.items():
            e = {"name": f"{res.name}-{q.lower()}", "backend": (ollama_backend if ollama_create else llamacpp).SPEC.name}
            if ollama_create:
                e["tag"] = tags[q]
                if ollama_host and len(ollama_host) > 1:  # served by every host: its calls are spread over them
                    e["endpoints"] = list(ollama_host)
            else:
                e["path"] = relpath(spec.gguf, config.parent)
            e.update({"family": res.name, "quant": q, "prompt_style": prompt_style})
            if system:
                e["system_prompt"] = system
            if not ollama_create and res.engine_template:  # the GGUF has no template: declare its family
                e["options"] = {"chat_template": res.engine_template}
            e["manifest"] = relpath(res.manifest_path, config.parent)
            entries.append(e)
        diff = registry.register(config, entries)
        typer.echo(diff, nl=False)
        typer.echo(f"registered {len(entries)} model(s) in {config}: {', '.join(e['name'] for e in entries)}")


data_app = typer.Typer(help="Build a training set: public sets, labels from a larger model, join, export.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


def _scores(label_scores: Optional[str]) -> dict | None:
    if not label_scores:
        return None
    try:
        out = {k.strip().lower(): float(v) for k, v in (p.split("=") for p in label_scores.split(","))}
    except ValueError:
        raise ShootoutError(f"cannot read --label-scores '{label_scores}'",
                            "write it as positive=0.6,neutral=0,negative=-0.6") from None
    return out


@data_app.command("tweets")
def data_tweets(csv_file: Path = typer.Argument(..., help="the airline tweets CSV (Tweets.csv)"),
                out: Path = typer.Option(Path("data/tweets.jsonl"), "--out"),
                label_scores: Optional[str] = typer.Option(None, "--label-scores",
                                                           help="e.g. positive=0.6,neutral=0,negative=-0.6")):
    """Airline tweets (text, label, label confidence) to records."""
    from finetune import data

    n = data.write_records(data.from_airline_csv(csv_file, _scores(label_scores)), out)
    typer.echo(f"wrote {n} records to {out}")


@data_app.command("phrasebank")
def data_phrasebank(txt_file: Path = typer.Argument(..., help="a Financial PhraseBank Sentences_*Agree.txt"),
                    out: Path = typer.Option(Path("data/phrasebank.jsonl"), "--out"),
                    agreement: Optional[float] = typer.Option(None, "--agreement",
                                                              help="annotator agreement (default: from the file name)"),
                    label_scores: Optional[str] = typer.Option(None, "--label-scores")):
    """Financial PhraseBank sentences to records (annotator agreement -> confidence)."""
    from finetune import data

    n = data.write_records(data.from_phrasebank(txt_file, agreement, _scores(label_scores)), out)
    typer.echo(f"wrote {n} records to {out}")


def _task_of(config: Optional[Path]):
    """The task of a config (--config), or financial sentiment when none is given."""
    if config is None:
        from benchmark.tasks.sentiment import SENTIMENT

        return SENTIMENT, None
    from benchmark.config import load_config
    from benchmark.tasks import task_for

    cfg = load_config(config, check_files=False)
    return task_for(cfg), cfg


TASK_CONFIG_OPT = typer.Option(None, "--config", "-c", help="the config whose task the records answer "
                                                            "(default: financial sentiment)")


@data_app.command("build")
def data_build(config: Path = CONFIG_OPT,
               out: Path = typer.Option(Path("data"), "--out", help="folder for <task>.<split>.jsonl")):
    """A classification task's labelled data (merge map applied, split with its recorded seed) as records."""
    from benchmark import data as bdata
    from finetune import data

    task, _ = _task_of(config)
    if not hasattr(task, "all_items"):
        raise ShootoutError(f"task '{task.name}' has no labelled data block",
                            "`data build` is for classification tasks; for sentiment use tweets, phrasebank or label")
    by_split = data.from_task_data(task)
    for split, recs in by_split.items():
        path = out / f"{task.name}.{split}.jsonl"
        n = data.write_records(recs, path)
        counts = bdata.summarize([r.item().model_copy(update={"label": r.answer["label"]}) for r in recs])["labels"]
        typer.echo(f"{path}: {n} records ({', '.join(f'{k} {v}' for k, v in counts.items())})")


@data_app.command("label")
def data_label(config: Path = CONFIG_OPT,
               model: str = typer.Option(..., "--model", "-m", help="the labelling model: a name in config.yaml"),
               out: Path = typer.Option(Path("data/labelled.jsonl"), "--out"),
               retries: int = typer.Option(2, "--retries", help="retries of an invalid reply"),
               progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Label the config's items with a larger model (any backend), for the config's task; resumable."""
    from rich.progress import Progress

    from benchmark.backends import make_backend
    from finetune import data

    task, cfg = _task_of(config)
    entry = next((m for m in cfg.models if m.name == model), None)
    if entry is None:
        raise ShootoutError(f"no model '{model}' in {config}", f"models there: {', '.join(m.name for m in cfg.models)}")
    items = task.load_items(cfg)
    backend = make_backend(entry, cfg)
    backend.load()
    try:
        with Progress(console=_console(), disable=not progress) as prog:
            bar = prog.add_task(f"labelling with {model}", total=None)
            stats = data.label_items(task, items, backend, out, retries=retries, seed=cfg.run.seed,
                                     progress=lambda k, n: prog.update(bar, completed=k, total=n))
    finally:
        backend.close()
    typer.echo(f"{out}: {stats['labelled']} labelled now, {stats['already']} already there, "
               f"{stats['rejected']} rejected after retries ({stats['calls']} calls)")


@data_app.command("join")
def data_join(inputs: List[Path] = typer.Argument(..., help="record JSONL files"),
              out: Path = typer.Option(Path("data/train.jsonl"), "--out"),
              config: Optional[Path] = TASK_CONFIG_OPT):
    """Sanitize, validate (against the task's reply) and de-duplicate records from several files into one."""
    from finetune import data

    task, _ = _task_of(config)
    r = data.join(inputs, out, task)
    typer.echo(f"{out}: kept {r['kept']} of {r['read']} ({r['invalid']} invalid, {r['duplicates']} duplicates)")
    for p in r["problems"]:
        typer.echo(f"  invalid: {p}")


@data_app.command("export")
def data_export(records: Path = typer.Argument(..., help="joined records (JSONL)"),
                out: Path = typer.Option(..., "--out"),
                fmt: str = typer.Option("sharegpt", "--format", help="sharegpt | alpaca"),
                system: Optional[str] = typer.Option(None, "--system", help="system prompt (default: the task's)"),
                config: Optional[Path] = TASK_CONFIG_OPT):
    """Write records as ShareGPT or Alpaca JSONL: the task's zero-shot prompt -> its reply."""
    from finetune import data

    task, _ = _task_of(config)
    n = data.export(records, out, fmt, task, system)
    typer.echo(f"wrote {n} {fmt} records to {out}")


@app.command("finetune")
def finetune_cmd(base: str = typer.Argument(..., help="base model: a Hugging Face folder or a GGUF"),
                 dataset: Path = typer.Argument(..., help="ShareGPT JSONL (`shootout data export`)"),
                 out: Path = typer.Option(Path("finetuned"), "--out"),
                 lora_r: int = typer.Option(16, "--lora-r"), lora_alpha: int = typer.Option(32, "--lora-alpha"),
                 lora_dropout: float = typer.Option(0.05, "--lora-dropout"),
                 target_modules: str = typer.Option(",".join(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                              "up_proj", "down_proj")), "--target-modules"),
                 epochs: float = typer.Option(1.0, "--epochs"),
                 max_steps: int = typer.Option(-1, "--max-steps", help="overrides --epochs when > 0"),
                 learning_rate: float = typer.Option(2e-4, "--lr"),
                 batch_size: int = typer.Option(4, "--batch-size"), grad_accum: int = typer.Option(1, "--grad-accum"),
                 max_seq_len: int = typer.Option(1024, "--max-seq-len"),
                 eval_fraction: float = typer.Option(0.1, "--eval-fraction"),
                 eval_steps: int = typer.Option(10, "--eval-steps"),
                 seed: int = typer.Option(42, "--seed"),
                 engine: str = typer.Option("auto", "--engine", help="auto | unsloth | transformers"),
                 load_in_4bit: bool = typer.Option(False, "--load-in-4bit", help="Unsloth: QLoRA"),
                 chat_format: Optional[str] = typer.Option(None, "--chat-format",
                                                           help="template when the base has none"),
                 export: bool = typer.Option(False, "--export", help="export the merged model to a GGUF ladder"),
                 quants: str = typer.Option("Q8_0,Q5_K_M,Q4_K_M", "--quants", help="with --export"),
                 name: Optional[str] = typer.Option(None, "--name", help="with --export: file prefix")):
    """LoRA fine-tune (Unsloth on CUDA, transformers + PEFT + TRL elsewhere) and save a merged model."""
    from finetune.train import FinetuneOptions, finetune

    console = _console()
    opts = FinetuneOptions(base=base, dataset=str(dataset), out=str(out), lora_r=lora_r, lora_alpha=lora_alpha,
                           lora_dropout=lora_dropout, target_modules=tuple(t for t in target_modules.split(",") if t),
                           epochs=epochs, max_steps=max_steps, learning_rate=learning_rate, batch_size=batch_size,
                           grad_accum=grad_accum, max_seq_len=max_seq_len, eval_fraction=eval_fraction,
                           eval_steps=eval_steps, seed=seed, engine=engine, load_in_4bit=load_in_4bit,
                           chat_format=chat_format)
    rep = finetune(opts, console=console)
    first = rep["train_loss_per_step"][0]["loss"] if rep["train_loss_per_step"] else float("nan")
    last = rep["train_loss_per_step"][-1]["loss"] if rep["train_loss_per_step"] else float("nan")
    evals = rep["eval_loss"]
    console.print(f"{rep['global_steps']} steps in {rep['train_seconds']} s ({rep['seconds_per_step']} s/step, "
                  f"{rep['engine']}); train loss {first:.4f} -> {last:.4f}"
                  + (f"; eval loss {evals[0]['eval_loss']:.4f} -> {rep['final_eval_loss']:.4f}" if evals else ""))
    console.print(f"merged model: {rep['outputs']['merged']}; report: {out / 'training_report.json'}")
    if export:
        from export.pipeline import ExportOptions, print_summary, run_export

        res = run_export(Path(rep["outputs"]["merged"]),
                         ExportOptions(name=name or out.name, out=out / "gguf",
                                       quants=tuple(q for q in quants.split(",") if q.strip())), console=console)
        print_summary(console, res)


@app.command("learning-curve")
def learning_curve_cmd(base: str = typer.Argument(..., help="base model: a Hugging Face folder or a GGUF"),
                       config: Path = CONFIG_OPT,
                       out: Path = typer.Option(Path("learning-curve"), "--out"),
                       every: int = typer.Option(10, "--every", min=1, help="a checkpoint every N steps or epochs"),
                       total: int = typer.Option(50, "--total", min=1, help="train for this many steps or epochs"),
                       unit: str = typer.Option("steps", "--unit", help="steps | epochs"),
                       quant: str = typer.Option("Q8_0", "--quant", help="the GGUF each checkpoint is benchmarked as"),
                       lr: float = typer.Option(2e-4, "--lr"), batch_size: int = typer.Option(4, "--batch-size"),
                       lora_r: int = typer.Option(16, "--lora-r"), seed: int = typer.Option(42, "--seed"),
                       chat_format: Optional[str] = typer.Option(None, "--chat-format"),
                       iterations: int = typer.Option(1, "--iterations", min=1),
                       splits: str = typer.Option("train,validation", "--splits",
                                                  help="the splits every checkpoint is asked about"),
                       progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Fine-tune with a checkpoint every N steps/epochs, benchmark each on train and validation, plot the curve."""
    from shootout.learning_curve import prepare

    if unit not in ("steps", "epochs"):
        raise ShootoutError(f"--unit '{unit}'", "use steps or epochs")
    console = _console()
    path = prepare(config, base, out, every=every, unit=unit, total=total, quant=quant.upper(), lr=lr,
                   batch_size=batch_size, lora_r=lora_r, seed=seed, chat_format=chat_format, iterations=iterations,
                   splits=tuple(s.strip() for s in splits.split(",") if s.strip()), console=console)
    console.print(f"learning-curve config: {path}")
    _run_and_report(path, progress)


@app.command("export-json")
def export_json(config: Path = CONFIG_OPT,
                db: Optional[Path] = typer.Option(None, "--db", help="results database (default: the config's)"),
                run_id: Optional[str] = typer.Option(None, "--run-id", help="default: the latest run"),
                out: Path = typer.Option(Path("sentiments"), "--out")):
    """Write results in the older tool's layout: sentiments/<model>/<TICKER>_<i>.json."""
    from benchmark.report.seed_json import export_seed_format

    from shootout import reporting

    with reporting.store_for(config, db) as store:
        rid = reporting.pick_run(store, run_id)
        files = export_seed_format(store, rid, out)
    typer.echo(f"wrote {len(files)} files under {out}/ (run {rid})")


@app.command()
def runs(config: Path = CONFIG_OPT, db: Optional[Path] = typer.Option(None, "--db")):
    """List the runs in a results database."""
    from shootout import reporting

    with reporting.store_for(config, db) as store:
        for rid in store.run_ids():
            r = store.run(rid)
            state = "finished" if r["finished_at"] else "unfinished"
            typer.echo(f"{rid}  {r['created_at']}  {store.count_calls(rid):>6} calls  {state}")


# OS errors a user causes (a full disk, a file where a folder belongs, no permission): one message
_USER_ERRNOS = {"ENOSPC": "free some space on that disk", "EDQUOT": "free some space within your quota",
                "EEXIST": "a file stands where a folder is needed: move it, or name another folder",
                "ENOTDIR": "a file stands where a folder is needed: move it, or name another folder",
                "EISDIR": "a folder stands where a file is needed: name a file",
                "EACCES": "choose a place you can write, or fix the permissions",
                "EPERM": "choose a place you can write, or fix the permissions",
                "EROFS": "that disk is read-only: choose another place"}


def _print_error(message: str, hint: str | None) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True, highlight=False, markup=False, emoji=False)
    # the message may quote URLs, server replies or model output: never read as markup
    console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    if hint:
        console.print(Text.assemble("  ", ("hint:", "bold"), " ", hint), soft_wrap=True)


def main() -> None:
    import errno

    try:
        app()
    except ShootoutError as exc:
        _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "")
        if name not in _USER_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _print_error(f"{where}{exc.strerror or exc}", _USER_ERRNOS[name])
        sys.exit(2)


if __name__ == "__main__":
    main()
