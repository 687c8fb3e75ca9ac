"""The backend registry: each backend's own options, its capabilities, and what config validation and
the runner make of them. A backend registered here, in the test, is validated and run like a shipped
one, without touching config.py or the runner."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from core.naming import series
from pydantic import Field

from benchmark.backends import BACKENDS, capable, make_backend, owners, spec_of
from benchmark.backends.base import BackendOptions, BackendSpec, Capabilities, Reply
from benchmark.config import load_config, parse_config
from benchmark.run.runner import Runner
from benchmark.store import Store
from core.errors import ConfigError
from tests.conftest import ROOT, shootout
from tests.fake_configs import classify_config

WHERE = {"llamacpp": "path: m.gguf", "ollama": "tag: 'gemma3:270m'", "openai": "base_url: 'http://127.0.0.1:1/v1'",
         "mlx": "base_url: 'http://127.0.0.1:1/v1'", "fake": ""}


def _entry(backend: str, options: str = "", name: str = "x") -> str:
    where = WHERE.get(backend, "")
    return (f"  - name: {name}\n    backend: {backend}\n" + (f"    {where}\n" if where else "") +
            "    family: f\n    quant: Q4_0\n" + (f"    options:\n{options}" if options else ""))


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, check_files=False)
    return err.value.problems


# every option a backend owns, on every other backend that does not take it
FOREIGN = [(backend, option, owner) for owner, spec in BACKENDS.items() for option in spec.own_options()
           for backend in BACKENDS if option not in BACKENDS[backend].options.model_fields]


@pytest.mark.parametrize("backend, option, owner", FOREIGN)
def test_an_option_of_another_backend_is_one_error_naming_its_owner(backend, option, owner):
    value = {"n_threads": 2, "n_gpu_layers": -1, "retries": 1, "timeout_s": 5, "accuracy": 0.5,
             "invalid_rate": 0.1, "label_confidence": 0.5, "down_after": 3, "seconds_per_prompt_token": 0.1,
             "seconds_per_token": 0.1, "load_seconds": 1, "sleep": "false", "model_bytes": 10, "memory_mb": 1,
             "replies": "[a]", "by_item": "{a: b}", "faults": "{a: not_json}"}.get(option, "v")
    text = "models:\n" + _entry(backend, f"      num_ctx: 4096\n      {option}: {value}\n")
    problems = _problems(text)
    assert len(problems) == 1, problems
    line = text.splitlines().index(f"      {option}: {value}") + 1
    allowed = ", ".join(BACKENDS[backend].options.model_fields)
    owned_by = owners(option)
    assert owner in owned_by
    them = series(owned_by)  # "a", "a and b", "a, b and c"
    assert problems[0].startswith(f"models[0].options.{option} (line {line}): '{option}' is an option of the {them} "
                                  f"backend"), problems[0]
    assert f"not of {backend} (this model's backend). Options allowed here: {allowed}." in problems[0]
    assert problems[0].endswith(f"Remove it, or set backend: {series(owned_by, 'or')}.")


def test_the_shared_overrides_and_each_backends_own_options_validate(tmp_path):
    text = "models:\n" + "".join(_entry(b, "      temperature: 0.2\n      num_ctx: 4096\n", name=b) for b in BACKENDS)
    cfg = parse_config(text, check_files=False)
    for m in cfg.models:
        assert type(m.options) is BACKENDS[m.backend].options
        assert (cfg.setting(m, "temperature"), cfg.setting(m, "num_ctx"), cfg.setting(m, "num_predict")) == \
               (0.2, 4096, cfg.run.num_predict)
    typo = _problems("models:\n" + _entry("ollama", "      keep_alvie: 5m\n"))
    assert typo == ["models[0].options.keep_alvie (line 8): unknown key 'keep_alvie'. Allowed keys here (ollama "
                    "options): temperature, num_ctx, num_predict, keep_alive, timeout_s, retries, stream, "
                    "top_logprobs. Check the spelling or remove it."]
    # the stored settings keep each model's own options, and loading them again gives the same models
    import json

    dumped = json.loads(cfg.model_dump_json())["models"]
    assert [set(m["options"]) for m in dumped] == [set(BACKENDS[b].options.model_fields) for b in BACKENDS]


def test_the_foreign_option_error_comes_from_validate_and_run_alike(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("task: sentiment\nmodels:\n" + _entry("llamacpp", "      keep_alive: 5m\n").replace(
        "m.gguf", "embedded"))
    for command in ("validate", "run"):
        res = shootout(command, "-c", str(config), *(["--no-progress"] if command == "run" else []))
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        message = " ".join(res.stderr.split())
        assert "1 problem:" in message and "models[0].options.keep_alive (line 9)" in message
        assert "option of the ollama backend, not of llamacpp" in message and "n_threads" in message
    assert not (tmp_path / "reports").exists()


def test_an_unknown_backend_lists_the_registered_ones():
    problems = _problems("models:\n  - {name: x, backend: olama, tag: t, family: f, quant: Q4_0, "
                         "options: {keep_alive: 5m}}\n")
    names = [f"'{n}'" for n in BACKENDS]
    assert problems == [f"models[0].backend (line 2): 'olama' (a string) is not allowed; use one of "
                        f"{', '.join(names[:-1])} or {names[-1]}."]


def test_endpoints_only_on_backends_that_can_spread_calls():
    problems = _problems("models:\n" + _entry("llamacpp") + "    endpoints: [a, b]\n")
    can = [n for n in capable("endpoints") if not BACKENDS[n].scripted]
    assert problems == [f"models[0] (line 2): backend 'llamacpp' cannot spread calls over endpoints: endpoints are "
                        f"for ollama, openai and mlx."]
    assert can == ["ollama", "openai", "mlx"]


# --------------------------------------------------------------------------- log-probability mode


def _logprob_config(tmp_path, *backends):
    models = "".join(_entry(b, name=f"m-{b}") for b in backends)
    return classify_config(tmp_path, models=models, decoding="logprob")


def test_every_shipped_backend_scores_labels():
    assert capable("label_scores", scripted=False) == ["llamacpp", "ollama", "openai", "mlx"]


def test_logprob_on_a_backend_that_cannot_score_labels_is_refused_by_validate(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "echo", ECHO)  # a backend without the label_scores capability
    config = _logprob_config(tmp_path, "llamacpp", "echo")
    config.write_text(config.read_text().replace("m.gguf", "embedded"))
    with pytest.raises(ConfigError) as err:
        load_config(config)
    line = config.read_text().splitlines().index("  decoding: logprob") + 1
    assert err.value.problems == [
        f"task.decoding (line {line}): decoding: logprob scores every label from the model's log-probabilities, which "
        f"only the llamacpp, ollama, openai and mlx backends can do; 'm-echo' (echo) cannot. Use decoding: generate, "
        f"or run those models on llamacpp, ollama, openai or mlx."]
    # generation is fine on every backend
    config.write_text(config.read_text().replace("decoding: logprob", "decoding: generate"))
    load_config(config)


@pytest.mark.slow
def test_validate_names_a_backend_without_label_scoring(tmp_path, monkeypatch):
    """The command line says it too: a shipped backend with the flag turned off (in the validating
    process, through the registry's plugin hook) is named."""
    config = _logprob_config(tmp_path, "openai")
    code = ("import dataclasses, sys; from benchmark.backends import BACKENDS, register; "
            "s = BACKENDS['openai']; register(dataclasses.replace(s, capabilities=dataclasses.replace("
            "s.capabilities, label_scores=False))); from shootout.cli import main; sys.argv = ['shootout', "
            f"'validate', '-c', {str(config)!r}]; main()")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    line = config.read_text().splitlines().index("  decoding: logprob") + 1
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"task.decoding (line {line})" in res.stderr and "'m-openai' (openai) cannot" in " ".join(res.stderr.split())


def test_giving_a_backend_label_scoring_is_one_flag(tmp_path, monkeypatch):
    spec = BACKENDS["ollama"]
    monkeypatch.setitem(BACKENDS, "ollama", dataclasses.replace(
        spec, capabilities=dataclasses.replace(spec.capabilities, label_scores=False)))
    config = _logprob_config(tmp_path, "ollama")
    with pytest.raises(ConfigError):
        load_config(config)
    monkeypatch.setitem(BACKENDS, "ollama", spec)
    assert load_config(config).task.decoding == "logprob"
    assert "ollama" in capable("label_scores")


# --------------------------------------------------------------------------- a backend added in a test


class EchoOptions(BackendOptions):
    voice: str = Field("plain", pattern="^(plain|loud)$")


class EchoBackend:
    """Answers every label task with its first label; reports memory only when asked to."""

    def __init__(self, entry, cfg, endpoint=None):
        self.name, self.voice, self.memory_asked = entry.name, entry.options.voice, 0

    def load(self):
        return 0.0

    def engine_info(self):
        return {"engine": "echo", "voice": self.voice}

    def close(self):
        pass

    def chat(self, messages, *, schema=None, temperature=0.0, seed=0, max_tokens=256, grammar=None):
        assert grammar is None and schema is not None  # only the constraint it declared it takes
        text = '{"label": "negative"}'
        return Reply(text=text.upper() if self.voice == "loud" else text, finish_reason="stop", prompt_tokens=1,
                     completion_tokens=1, prompt_seconds=None, gen_seconds=None, wall_seconds=0.0)


ECHO = BackendSpec(name="echo", description="answers the first label", options=EchoOptions, factory=EchoBackend,
                   capabilities=Capabilities(json_schema=True))


def test_a_backend_registered_in_a_test_is_validated_with_its_options_and_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "echo", ECHO)
    models = _entry("echo", "      voice: plain\n", name="e")
    cfg = load_config(classify_config(tmp_path, models=models, n_items=4, iterations=1))
    assert isinstance(cfg.models[0].options, EchoOptions) and spec_of(cfg.models[0]) is ECHO
    # its own option is checked by its own model; another backend's option names that backend
    bad = _problems("models:\n" + _entry("echo", "      voice: whisper\n      n_threads: 2\n"))
    assert len(bad) == 2 and "models[0].options.voice (line 7)" in bad[0]
    assert bad[1].startswith("models[0].options.n_threads (line 8): 'n_threads' is an option of the llamacpp backend, "
                             "not of echo") and "Options allowed here: temperature, num_ctx, num_predict, voice." in bad[1]
    with Store(tmp_path / "results.sqlite") as store:
        result = Runner(cfg, store, run_id="r", progress=False).run()
        rows = store.calls("r")
        loads = store.db.execute("SELECT backend, rss_mb, engine_json FROM model_loads").fetchall()
    assert result.stored == 4 and all(r["backend"] == "echo" and r["label"] == "negative" for r in rows)
    # no memory_facts capability: the runner never asks (EchoBackend has no such method), nor counts its RSS
    assert [(b, rss) for b, rss, _ in loads] == [("echo", None)] and '"voice": "plain"' in loads[0][2]
    assert isinstance(make_backend(cfg.models[0], cfg), EchoBackend)


def test_the_export_stage_does_not_import_the_benchmark_backends():
    code = ("import sys, export.ollama_create, core.hosts; "
            "print(sorted(m for m in sys.modules if m.startswith('benchmark')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    from benchmark.backends import ollama_backend
    from core.hosts import normalize_host
    from export import ollama_create

    assert ollama_backend.normalize_host is normalize_host and ollama_create.normalize_host is normalize_host
