"""config.yaml: the shipped file validates; each broken file gives one clear message and exit code 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from benchmark.backends import BACKENDS
from benchmark.config import load_config, parse_config
from core.errors import ConfigError
from tests.conftest import ROOT, shootout
from tests.gguf_files import write_gguf

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
    return write_gguf(tmp_path / "m.gguf")


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
    "option_of_another_backend": (("    quant: Q8_0\n", "    quant: Q8_0\n    options:\n      n_threads: 2\n      api_key: k\n"),
                                  ["models[1].options.api_key (line 15)", "'api_key' is an option of the openai and mlx backends",
                                   "not of llamacpp", "Options allowed here: temperature, num_ctx, num_predict, "
                                   "n_threads, n_gpu_layers, chat_template", "set backend: openai or mlx"]),
    "iterations_true": (("iterations: 2", "iterations: true"),
                        ["run.iterations (line 3)", "expected a number, not a yes/no"]),
    "concurrency_true": (("iterations: 2", "iterations: 2\n  concurrency: true"),
                         ["run.concurrency (line 4)", "expected a number, not a yes/no"]),
    "option_num_ctx_true": (("    quant: Q8_0\n", "    quant: Q8_0\n    options:\n      num_ctx: true\n"),
                            ["models[1].options.num_ctx (line 14)", "expected a number, not a yes/no"]),
    "unknown_sampling_mode": (("    quant: Q8_0\n", "    quant: Q8_0\n    options:\n      sampling: gpu\n"),
                              ["models[1].options.sampling (line 14)", "'gpu'",
                               "use one of 'auto', 'fast', 'device' or 'reference'"]),
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


def test_a_yes_no_where_a_number_belongs_is_refused_everywhere_but_where_a_bool_is_one_of_the_choices(tmp_path):
    """YAML reads yes/no/true/false as booleans, and pydantic would read them as 1 and 0: a task block's
    count is refused like the run's; ``speed_bench: true`` (a bool or a number) is still taken."""
    classify = ROOT / "examples" / "sst2" / "config.yaml"
    text = classify.read_text()
    for old, new, field in (("few_shot: {k: 2, seed: 0}", "few_shot: {k: true, seed: 0}", "few_shot.k"),
                            ("  iterations: 3", "  iterations: 3\n  speed_bench: true", None)):
        assert old in text
        cfg = tmp_path / "config.yaml"
        cfg.write_text(text.replace(old, new))
        (tmp_path / "data").mkdir(exist_ok=True)
        for f in (ROOT / "examples" / "sst2" / "data").iterdir():
            (tmp_path / "data" / f.name).write_bytes(f.read_bytes())
        res = shootout("validate", "-c", str(cfg))
        if field is None:
            assert res.returncode == 0, res.stderr
        else:
            assert res.returncode == 2 and field in res.stderr and "not a yes/no" in res.stderr, res.stderr
            assert "Traceback" not in res.stderr


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


@pytest.mark.parametrize("backend, field", [(n, s.where) for n, s in BACKENDS.items() if s.where])
def test_each_backend_names_the_field_it_needs(backend, field):
    assert (backend, field) in {("llamacpp", "path"), ("ollama", "tag"), ("openai", "base_url"), ("mlx", "base_url")}
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


# ---------------------------------------------------------------- issue 14: hostile configs and files

MODEL = "models:\n  - {name: a, backend: openai, base_url: 'http://127.0.0.1:1/v1', family: f, quant: Q4_0}\n"


@pytest.mark.parametrize("url, needle", [
    ("https://x.test/rss?s={}", "has the placeholder {}"),
    ("https://x.test/rss?s={ticker}&region={region}", "has the placeholder {region}"),
    ("https://x.test/rss?s={ticker", "unbalanced braces"),
    ("https://x.test/{ticker.__class__}", "has the placeholder {ticker.__class__}"),
    ("file:///etc/{ticker}", "must be an http:// or https:// URL"),
])
def test_rss_url_with_a_foreign_placeholder_or_scheme_is_a_config_error(tmp_path, url, needle):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"news:\n  source: rss\n  rss_url: '{url}'\n" + MODEL)
    res = shootout("validate", "-c", str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    message = " ".join(res.stderr.split())
    assert "news.rss_url (line 3)" in message and needle in message and "1 problem:" in message


def test_rss_url_with_literal_braces_and_ticker_is_fine():
    cfg = parse_config("news: {rss_url: 'https://x.test/{{raw}}/{ticker}'}\n" + MODEL, check_files=False)
    assert cfg.news.rss_url.format(ticker="A") == "https://x.test/{raw}/A"


def test_news_safety_options_have_safe_defaults_and_are_checked():
    cfg = parse_config(MODEL, check_files=False)
    n = cfg.news
    assert n.allow_private_addresses is False and n.max_fetch_bytes == 5_000_000 and n.max_article_chars == 10_000
    cfg = parse_config("news: {allow_private_addresses: [127.0.0.2, 10.0.0.0/8]}\n" + MODEL, check_files=False)
    assert cfg.news.allow_private_addresses == ["127.0.0.2", "10.0.0.0/8"]
    with pytest.raises(ConfigError) as err:
        parse_config("news: {allow_private_addresses: [intranet]}\n" + MODEL, check_files=False)
    assert "news.allow_private_addresses" in err.value.problems[0] and "'intranet'" in err.value.problems[0]


def test_openai_timeout_and_retries_per_model():
    cfg = parse_config(MODEL.replace("quant: Q4_0}", "quant: Q4_0, options: {timeout_s: 2.5, retries: 0}}"),
                       check_files=False)
    from benchmark.backends import make_backend

    b = make_backend(cfg.models[0], cfg)
    assert (b.timeout, b.retries) == (2.5, 0)
    b = make_backend(parse_config(MODEL, check_files=False).models[0], cfg)
    assert (b.timeout, b.retries) == (300.0, 2)  # the defaults
    with pytest.raises(ConfigError) as err:
        parse_config(MODEL.replace("quant: Q4_0}", "quant: Q4_0, options: {timeout_s: 0, retries: -1}}"),
                     check_files=False)
    assert len(err.value.problems) == 2


@pytest.mark.parametrize("case", ["truncated", "foreign", "empty"])
def test_validate_reads_each_gguf_header(tmp_path, gguf, case):
    bad = tmp_path / "bad.gguf"
    if case == "truncated":
        write_gguf(bad, truncate_to=len(gguf.read_bytes()) - 8)
    elif case == "foreign":
        bad.write_text("<html>not a model</html>")
    else:
        bad.write_bytes(b"")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(GOOD.replace("path: {gguf}\n    family: gemma3-270m\n    quant: Q8_0",
                                f"path: {bad}\n    family: gemma3-270m\n    quant: Q8_0").format(gguf=gguf))
    res = shootout("validate", "-c", str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip().startswith("- ")]
    assert len(lines) == 1, res.stderr
    message = " ".join(res.stderr.split())
    assert "models[1].path (line 10)" in message and "model 'b'" in message and str(bad) in message
    assert {"truncated": "truncated", "foreign": "not a GGUF file", "empty": "not a GGUF file"}[case] in message
    # the good one alone validates
    cfg.write_text(GOOD.format(gguf=gguf))
    assert shootout("validate", "-c", str(cfg)).returncode == 0


def test_an_embedded_model_is_named_in_the_path_and_an_unknown_one_refused(tmp_path):
    """`path: embedded:smollm2` names the second embedded model; a name the table does not hold is one
    problem with the names it does, found by validate (no file is fetched to say so)."""
    from benchmark.config import parse_config
    from core.errors import ConfigError

    text = ("models:\n  - name: s\n    path: embedded:smollm2\n    family: smollm2-135m\n    quant: Q4_1\n"
            "  - name: g\n    path: embedded\n    family: gemma3-270m\n    quant: Q4_K_M\n")
    cfg = parse_config(text, base_dir=tmp_path)
    assert [m.path for m in cfg.models] == ["embedded:smollm2", "embedded"]
    with pytest.raises(ConfigError) as err:
        parse_config(text.replace("embedded:smollm2", "embedded:llama9"), base_dir=tmp_path)
    assert "models[0].path (line 3)" in str(err.value) and "no embedded model 'llama9'" in str(err.value)
    assert "smollm2-135m" in str(err.value)
