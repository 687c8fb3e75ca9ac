"""The command line's own promises, in process (no model, no subprocess): help texts list what the
tables they describe hold (chat families, backends, quant types, demo examples), `shootout --help`
answers without loading those tables, and the one entry builder writes entries a config accepts."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from shootout.cli import app
from tests.conftest import ROOT

WIDE = {"COLUMNS": "2000", "TERMINAL_WIDTH": "2000"}  # one row per option: nothing wrapped


def _option_help(args: list[str], option: str) -> str:
    """The help text of ``option`` as `shootout ARGS --help` prints it."""
    res = CliRunner().invoke(app, [*args, "--help"], env=WIDE)
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if re.search(rf"\s{re.escape(option)}\s", line)]
    assert len(rows) == 1, (option, res.output)
    return re.sub(r"\s+", " ", rows[0].strip("│ "))


def _listed(text: str, after: str, until: str | None = None) -> list[str]:
    """The comma-separated names in ``text`` after ``after`` (up to ``until``)."""
    part = text.split(after, 1)[1]
    if until:
        part = part.split(until, 1)[0]
    return [n.strip() for n in part.split(",") if n.strip()]


@pytest.mark.parametrize("args", [["export"], ["modelfile"], ["finetune"], ["learning-curve"]])
def test_chat_format_help_lists_every_family_of_the_table(args):
    from formats.chat import FAMILIES

    text = _option_help(args, "--chat-format")
    names = _listed(text, ": ", " (default" if "(default" in text else " [")
    names = [n.split()[0] for n in names]
    assert names == list(FAMILIES)
    assert {"llama2", "gemma2", "mistral-v3"} <= set(names)  # the families the help texts had lost


def test_register_help_names_the_chat_families_and_every_backend_with_its_description():
    from benchmark.backends import BACKENDS
    from formats.chat import FAMILIES

    chat = _option_help(["register"], "--chat-template")
    assert _listed(chat, "a chat family (", ")") == list(FAMILIES)
    backend = _option_help(["register"], "--backend")
    # every backend of the table, in its order, each with its description, and nothing else
    table = "; ".join(f"{name}: {spec.description}" for name, spec in BACKENDS.items())
    assert re.search(rf"<str>\s+{re.escape(table)} \[default: llamacpp\]", backend), backend


@pytest.mark.parametrize("args, option", [(["export"], "--quants"), (["finetune"], "--quants"),
                                          (["learning-curve"], "--quant")])
def test_quant_help_lists_the_quantizer_table(args, option):
    from export.quantize import ftype, quant_types

    text = _option_help(args, option)
    listed = _listed(text, "of: ", " [default")
    assert listed == quant_types() and {"Q4_K_M", "Q8_0", "F16"} <= set(listed)
    for name in listed:  # every name the help offers is one the quantizer takes
        ftype(name)


def test_demo_task_help_lists_the_examples_there_are():
    from shootout.demo import examples

    text = _option_help(["demo"], "--task")
    assert _listed(text, "examples/: ", " [default") == examples()
    assert {p.parent.name for p in (ROOT / "examples").glob("*/config.yaml")} == set(examples())


def test_top_level_help_lists_every_command_and_loads_none_of_the_tables():
    code = ("import sys, io, contextlib\nsys.argv = ['shootout', '--help']\nfrom shootout import cli\n"
            "buf = io.StringIO()\ntry:\n    with contextlib.redirect_stdout(buf): cli.main()\nexcept SystemExit: pass\n"
            "print(buf.getvalue())\n"
            "tables = ['formats.chat', 'benchmark.backends', 'export.quantize', 'shootout.demo', 'pydantic']\n"
            "print('loaded:', [m for m in tables if m in sys.modules])")
    env = {"COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, **env})
    assert r.returncode == 0, r.stderr
    assert "loaded: []" in r.stdout
    listed = set(re.findall(r"^│ (\S+)\s", r.stdout, flags=re.M))
    assert listed == {"run", "merge", "validate", "runs", "recover", "report", "heatmaps", "plan", "export-json", "view", "export",
                      "modelfile", "register", "doctor", "finetune", "learning-curve", "data", "demo",
                      "finetune-demo", "--help"}


def test_help_placeholders_are_all_filled():
    """No command's help shows a table placeholder: each one names a table the CLI knows."""
    from shootout.cli.common import HELP_TABLES

    import typer.main

    group = typer.main.get_command(app)
    seen = set()

    def walk(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])
        if not getattr(cmd, "commands", None):
            res = CliRunner().invoke(app, [*path, "--help"], env=WIDE)
            assert res.exit_code == 0, (path, res.output)
            assert not re.search(r"\{(%s)\}" % "|".join(HELP_TABLES), res.output), (path, res.output)
            for p in cmd.params:
                seen.update(re.findall(r"\{([a-z_]+)\}", getattr(p, "help", None) or ""))

    walk(group, [])
    assert seen <= set(HELP_TABLES)


def test_the_entry_builder_writes_entries_the_config_accepts(tmp_path):
    """register, export --register and learning-curve build their entries with one function: a ladder
    registered in Ollama on two hosts, the same ladder in process, and a checkpoint, all added to a
    commented config that then loads with the fields the commands set."""
    from benchmark.config import parse_config
    from benchmark.run.entries import ladder_entries, model_entry, register

    config = tmp_path / "config.yaml"
    config.write_text("# my study\ntask: sentiment\nmodels:   # the registry\n"
                      "  - {name: a, backend: ollama, tag: 'a:1', family: f, quant: Q4_0}\n")
    ggufs = {q: tmp_path / "ladder" / f"m.{q}.gguf" for q in ("Q8_0", "Q4_K_M")}
    in_ollama = ladder_entries("m", ggufs, config_dir=tmp_path, prompt_style="zero_shot", system_prompt="S",
                               manifest=tmp_path / "ladder" / "manifest.json",
                               ollama_tags={q: f"m:{q.lower()}" for q in ggufs},
                               ollama_hosts=["http://h1:11434", "http://h2:11434"])
    in_process = ladder_entries("m2", ggufs, config_dir=tmp_path, prompt_style="few_shot", chat_template="gemma3")
    checkpoint = model_entry("ckpt-10", "llamacpp", path="gguf/ckpt-10.Q8_0.gguf", family="fine-tune",
                             quant="Q8_0", prompt_style="zero_shot", checkpoint=10, chat_template="gemma3")
    diff = register(config, [*in_ollama, *in_process, checkpoint])
    assert "+  - name: m-q8_0" in diff and "# my study" in config.read_text()
    cfg = parse_config(config.read_text(), source=str(config), base_dir=tmp_path, check_files=False)
    models = {m.name: m for m in cfg.models}
    assert list(models) == ["a", "m-q8_0", "m-q4_k_m", "m2-q8_0", "m2-q4_k_m", "ckpt-10"]
    m = models["m-q4_k_m"]
    assert (m.backend, m.tag, m.endpoints, m.quant, m.prompt_style, m.system_prompt) == \
        ("ollama", "m:q4_k_m", ["http://h1:11434", "http://h2:11434"], "Q4_K_M", "zero_shot", "S")
    assert m.manifest == "ladder/manifest.json" and "options" not in in_ollama[1]  # Ollama's model has its template
    m2 = models["m2-q8_0"]
    assert (m2.backend, m2.path, m2.options.chat_template) == ("llamacpp", "ladder/m.Q8_0.gguf", "gemma3")
    assert models["ckpt-10"].checkpoint == 10


def test_the_zygote_preloads_what_the_install_compiles_and_both_name_modules_there_are():
    """tests/zygote.py imports once what the commands use; shootout.precompile writes the bytecode of
    the same modules at install time. A module renamed or moved must be renamed in both lists."""
    from shootout.precompile import GROUPS
    from tests.zygote import BASE, ML

    compiled = set(GROUPS["base"]) | set(GROUPS["training"])
    assert set(BASE) | set(ML) <= compiled
    ours = {p.name for p in (ROOT / "src").iterdir() if (p / "__init__.py").is_file()}
    missing = []
    for name in sorted(compiled):
        if name.split(".")[0] in ours:
            path = ROOT / "src" / name.replace(".", "/")
            if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
                missing.append(name)
    assert missing == []
