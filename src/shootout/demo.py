"""`shootout demo`: the whole loop on the embedded models, offline.

Sentiment (the default): two families, each with its quant ladder built by llama.cpp's quantizer
from the embedded GGUF (core/embedded.py), registered in one config and run over the news
snapshot; the report answers "which family" (the pair of the families' references) and "which
rung within each family" (each rung against its family's F16).

The ladders (``LADDERS``): F16 / Q8_0 / Q4_0 for both Gemma 3 270M (from its Q4_K_M GGUF) and
SmolLM2-135M-Instruct (from its Q4_1 GGUF, requantized: llama.cpp's allow_requantize). Why:

- The same rungs in both families make a complete family x quant grid, the design the report's
  two-way ANOVA (family x quant, items as blocks) and the family x quant charts need.
- K-quants are not what they say on these models: a K-quant block is 256 wide and their rows are
  640 (Gemma) and 576 (SmolLM2) wide, so llama.cpp stores most tensors in a fallback type. Gemma's
  Q4_K_M is 63% Q8_0 (the token embedding), 24% Q5_0, 9% Q4_K, 4% Q6_K; its Q5_K_M (248.0 MiB)
  differs from Q4_K_M (241.4 MiB) in a third of the weights only. SmolLM2's Q4_K_M is 58% Q5_0 and
  11% Q4_K, 100.6 MiB: larger than its Q4_1 source (93.8 MiB).
- Q4_0 (32-wide blocks) is a real 4-bit rounding of every tensor but the tied token embedding,
  which llama.cpp keeps at Q8_0 (63% of Gemma's weights, 21% of SmolLM2's): 230.2 and 87.5 MiB.
- F16 holds each source's weights exactly (requantizing SmolLM2's F16 to Q4_1 gives back the
  source's tensors byte for byte), so it is each family's reference; a Q4_1 rung would repeat the
  source.
- Time: per call, side by side on 2 shared cores with one thread (benchmarks/demo_rungs.py), the
  six rungs take 1.39x the seconds of the four Gemma rungs of earlier versions (F16/Q8_0/Q5_K_M/
  Q4_K_M); 24 articles x 3 iterations stay well inside the demo's 15 minutes.

Each family's reference is its F16; the config's compare pairs hold each rung against it and the
two references against each other.

``--task NAME``: one of the classification studies in ``examples/``, copied into the output folder
(its config and data) and run there on an embedded model (``model``: Gemma by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.quantize import build_ladder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"  # the repository's examples/


@dataclass(frozen=True)
class Ladder:
    family: str              # the family name in the config (also the model names' prefix)
    model: str               # the embedded model (core.embedded.MODELS) it is built from
    rungs: tuple[str, ...]   # quant types below the F16 reference


LADDERS: dict[str, Ladder] = {lad.family: lad for lad in (
    Ladder("gemma3-270m", "gemma3-270m", ("Q8_0", "Q4_0")),
    Ladder("smollm2-135m", "smollm2-135m", ("Q8_0", "Q4_0")),
)}
FAMILY = "gemma3-270m"  # the first family (earlier versions had only this one)
SOURCE_NAME = "gemma-3-270m.Q4_K_M.source.gguf"  # the fine-tune demo's copy of the Gemma source

CONFIG_TEMPLATE = """\
# Written by `shootout demo`: embedded models ({families}), each at several quant levels built
# with llama.cpp's quantizer, run offline on the news snapshot shipped with gguf-shootout.
#   which family: {family_pair}
#   which rung:   each rung against its family's F16 (the source's weights)
# Edit and re-run with:
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
  speed_bench: {speed_bench}{speed_note}
  database: results.sqlite  # relative to this file
models:
{models}compare:{no_pairs}              # [reference, candidate] pairs for the paired tests of `shootout report`
{pairs}"""

MODEL_TEMPLATE = """\
  - name: {name}
    backend: llamacpp
    path: {path}
    family: {family}
    quant: {quant}
    prompt_style: few_shot  # the same five examples for every model
{options}"""


def model_name(family: str, quant: str) -> str:
    return f"{family}-{quant.lower()}"


def _options(ladder: Ladder) -> str:
    from core.embedded import model

    template = model(ladder.model).chat_template
    if template:
        return f"    options:\n      chat_template: {template}  # the GGUF carries no template; declare the format\n"
    return "    # chat format: the GGUF's own template\n"


def embedded_source(models_dir: Path, model: str | None = None) -> Path:
    """A copy of an embedded GGUF in ``models_dir`` (default Gemma, as ``SOURCE_NAME``), sha256-checked."""
    from core.embedded import embedded_gguf, model as entry

    m = entry(model)
    name = SOURCE_NAME if m.name == "gemma3-270m" else m.file.replace(".gguf", ".source.gguf")
    return embedded_gguf(models_dir / name, model_name=m.name)


def examples() -> list[str]:
    return sorted(p.parent.name for p in EXAMPLES.glob("*/config.yaml"))


def prepare_example(name: str, out_dir: Path, iterations: int | None, items: int | None,
                    model: str | None = None) -> Path:
    """Copy examples/<name> (config and data) into ``out_dir``; cap iterations and items if asked.
    ``model``: an embedded model (``smollm2``, ``gemma3-270m``, ...) to run instead of the example's
    default Gemma; its GGUF is placed in ``out_dir/models`` and the config's compare pairs follow."""
    import io
    import shutil

    from ruamel.yaml import YAML

    from core.embedded import DEFAULT, embedded_gguf, model as entry
    from core.errors import ShootoutError

    src = EXAMPLES / name
    if not (src / "config.yaml").is_file():
        raise ShootoutError(f"no example task '{name}'", f"use sentiment or one of: {', '.join(examples())}")
    chosen = entry(model) if model else None  # an unknown name fails before anything is written
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
    if chosen is not None and chosen.name != DEFAULT:
        gguf = embedded_gguf(out_dir / "models" / chosen.file, model_name=chosen.name)
        _swap_model(cfg, chosen, gguf.relative_to(out_dir).as_posix())
    buf = io.StringIO()
    y.dump(cfg, buf)
    path = out_dir / "config.yaml"
    text = buf.getvalue()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # an unchanged config resumes its run
        path.write_text(text, encoding="utf-8")
    return path


def _swap_model(cfg, chosen, path: str) -> None:
    """The example's one model entry becomes ``chosen`` (same backend, prompt style); pairs that
    name the old entry (``old@variant``) name the new one."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    old = cfg["models"][0]
    entry = CommentedMap()
    entry["name"] = chosen.name
    entry["backend"] = "llamacpp"
    entry["path"] = path
    entry["family"] = chosen.name
    entry["quant"] = chosen.quant
    entry["prompt_style"] = old.get("prompt_style", "few_shot")
    if chosen.chat_template:
        entry["options"] = {"chat_template": chosen.chat_template}
    entry.yaml_add_eol_comment(f"the embedded {chosen.title} ({chosen.quant}, {chosen.licence})", "path")
    cfg["models"] = CommentedSeq([entry])
    renamed = {old["name"]: chosen.name}
    for pair in cfg.get("compare") or []:
        for i, arm in enumerate(pair):
            base, at, variant = str(arm).partition("@")
            pair[i] = renamed.get(base, base) + at + variant


def _speed_bench() -> dict[str, str]:
    """The llama-bench-comparable block per model: on where the engine offloads to a GPU (seconds per
    model); off on a CPU-only build, where its five repetitions of pp512, tg128 and tg128 at depth take
    25-35 s per model on 2 cores (six rungs: 2.5 minutes more, a fifth of the demo)."""
    from engine.runtime import gpu_offload_supported

    if gpu_offload_supported():
        return {"speed_bench": "true", "speed_note": "         # each model's pp512 / tg128 / tg128 at depth "
                                                     "(the Speed sheet)"}
    return {"speed_bench": "false", "speed_note": "        # true adds each model's pp512 / tg128 / tg128 at depth "
                                                  "(about half a minute per model on a 2-core CPU)"}


def write_config(out_dir: Path, ladders: dict[str, dict[str, Path]], iterations: int, articles: int | None) -> Path:
    """The demo config: ``ladders`` is {family: {quant: GGUF}} (the reference, F16, first)."""
    models, pairs = [], []
    for family, ladder in ladders.items():
        spec = LADDERS.get(family) or Ladder(family, family, ())
        for q, p in ladder.items():
            models.append(MODEL_TEMPLATE.format(name=model_name(family, q), path=p.relative_to(out_dir).as_posix(),
                                                family=family, quant=q, options=_options(spec)))
        ref = model_name(family, next(iter(ladder)))
        pairs += [f"  - [{ref}, {model_name(family, q)}]\n" for q in list(ladder)[1:]]
    refs = [model_name(f, next(iter(lad))) for f, lad in ladders.items()]
    family_pair = (f"{refs[0]} against {', '.join(refs[1:])} (each family's reference)" if len(refs) > 1
                   else "one family only")
    pairs = [f"  - [{refs[0]}, {r}]\n" for r in refs[1:]] + pairs  # the family question first
    config_path = out_dir / "config.yaml"
    articles_line = f"  max_articles: {articles}\n" if articles else ""
    config_path.write_text(CONFIG_TEMPLATE.format(config_path=config_path.as_posix(), iterations=iterations,
                                                  articles_line=articles_line, models="".join(models),
                                                  pairs="".join(pairs), no_pairs="" if pairs else " []",
                                                  family_pair=family_pair, families=", ".join(ladders),
                                                  **_speed_bench()),
                           encoding="utf-8")
    return config_path


def prepare(out_dir: Path, iterations: int, articles: int | None, log=print,
            families: list[str] | None = None) -> Path:
    """Build each family's ladder (kept across runs) and write the demo config; returns its path.
    ``families``: some of ``LADDERS`` (names or embedded-model aliases such as ``smollm2``); default all."""
    from core.embedded import embedded_gguf, model as entry
    from core.errors import ShootoutError

    chosen: list[Ladder] = []
    for name in families or list(LADDERS):
        ladder = LADDERS.get(name) or next((lad for lad in LADDERS.values() if lad.model == entry(name).name), None)
        if ladder is None:
            raise ShootoutError(f"no demo ladder for '{name}'", f"use one of: {', '.join(LADDERS)}")
        if ladder not in chosen:
            chosen.append(ladder)
    models_dir = out_dir / "models"
    built: dict[str, dict[str, Path]] = {}
    for ladder in chosen:
        m = entry(ladder.model)
        src = embedded_gguf(model_name=m.name)
        log(f"embedded model: {m.title} ({src.name}, {src.stat().st_size / 2**20:.0f} MiB, {m.licence}, "
            "sha256 checked)")

        def report(qtype, path, secs):
            log(f"  {qtype:<7} {path.name:<32} " + ("kept (already built)" if secs is None else
                                                     f"built in {secs:.1f} s"))

        log(f"quant ladder of {ladder.family} (llama.cpp quantizer):")
        built[ladder.family] = build_ladder(src, models_dir, ladder.family, ladder.rungs, progress=report)
    return write_config(out_dir, built, iterations, articles)
