"""config.yaml: the shipped file validates; each broken file gives one clear message and exit code 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from benchmark.config import load_config, parse_config
from core.errors import ConfigError
from tests.conftest import ROOT, shootout

GOOD = """\
task: sentiment
run:
  iterations: 2
models:
  - name: a
    path: {gguf}
    family: gemma3-270m
    quant: Q4_K_M
  - name: b
    path: {gguf}
    family: gemma3-270m
    quant: Q8_0
compare:
  - [a, b]
"""


@pytest.fixture()
def gguf(tmp_path) -> Path:
    p = tmp_path / "m.gguf"
    p.write_bytes(b"GGUF")
    return p


def test_shipped_config_is_valid():
    cfg = load_config(ROOT / "config.yaml", check_files=False)
    assert cfg.models and all(m.quant for m in cfg.models)
    assert {m.prompt_style for m in cfg.models} <= {"few_shot", "zero_shot"}


def test_good_config_resolves_relative_paths(tmp_path, gguf):
    (tmp_path / "config.yaml").write_text(GOOD.format(gguf="m.gguf"))
    cfg = load_config(tmp_path / "config.yaml")
    assert cfg.resolve(cfg.models[0].path) == gguf.resolve()
    assert cfg.run.iterations == 2 and cfg.run.num_ctx == 2048  # defaults fill what is left out
    assert cfg.compare == [("a", "b")]


BROKEN = {
    "unknown_key": (("    quant: Q8_0\n", "    quant: Q8_0\n    qaunt: Q8_0\n"),
                    ["models[1].qaunt", "unknown key 'qaunt'", "line 13", "quant"]),
    "quant_not_string": (("quant: Q8_0", "quant: 8"),
                         ["models[1].quant", "expected a string", "8", 'quant: "8"']),
    "missing_gguf": (("path: {gguf}\n    family: gemma3-270m\n    quant: Q8_0", "path: nowhere/x.gguf\n    family: gemma3-270m\n    quant: Q8_0"),
                     ["models[1].path", "GGUF file not found", "nowhere/x.gguf", "shootout export"]),
    "pair_unknown_model": (("- [a, b]", "- [a, c]"),
                           ["compare[0][1]", "'c' is not a model", "known models: a, b"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_config_one_clear_message_exit_2(tmp_path, gguf, case):
    (old, new), expected = BROKEN[case]
    text = GOOD.replace(old, new).format(gguf=gguf)
    assert text != GOOD.format(gguf=gguf)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    for command in (["validate", "-c", str(cfg)], ["run", "-c", str(cfg), "--no-progress"]):
        res = shootout(*command)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr + res.stdout
        assert "1 problem:" in res.stderr
        problem_lines = [l for l in res.stderr.splitlines() if l.strip().startswith("- ")]
        assert len(problem_lines) == 1, res.stderr
        message = " ".join(res.stderr.split())
        for needle in expected:
            assert needle in message, (needle, res.stderr)
    assert not (tmp_path / "reports").exists(), "nothing may run on a broken config"


def test_every_problem_is_listed(tmp_path):
    text = textwrap.dedent("""\
        run: {iterations: zero, colour: red}
        models:
          - {name: x, family: f, quant: 4}
        """)
    with pytest.raises(ConfigError) as err:
        parse_config(text, check_files=False)
    problems = err.value.problems
    assert len(problems) == 3, problems
    joined = "\n".join(problems)
    for needle in ("run.iterations (line 1)", "run.colour (line 1)", "models[0].quant (line 3)"):
        assert needle in joined


@pytest.mark.parametrize("backend, field", [("llamacpp", "path"), ("ollama", "tag"), ("openai", "base_url")])
def test_each_backend_names_the_field_it_needs(backend, field):
    with pytest.raises(ConfigError) as err:
        parse_config(f"models:\n  - {{name: x, backend: {backend}, family: f, quant: Q4_0}}\n", check_files=False)
    assert err.value.problems == [f"models[0] (line 2): backend '{backend}' needs '{field}'."]


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config("models:\n  - name: a\n   quant: [\n", check_files=False)
    assert "line" in err.value.problems[0] and "not valid YAML" in err.value.problems[0]


def test_duplicate_names_and_self_pairs_rejected(tmp_path, gguf):
    text = GOOD.replace("name: b", "name: a").replace("[a, b]", "[a, a]").format(gguf=gguf)
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    joined = "\n".join(err.value.problems)
    assert "duplicate model name 'a'" in joined and "compares 'a' with itself" in joined
