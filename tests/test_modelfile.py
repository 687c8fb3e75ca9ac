"""Modelfiles: per chat family, the Go TEMPLATE renders the same prompt as the GGUF's own Jinja
template; stop tokens per family; unknown families refused; `shootout modelfile` on real GGUFs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core import chat, gotemplate
from core import gguf_meta
from export import modelfile
from core.errors import ShootoutError
from tests.conftest import ROOT, shootout

TEMPLATES = ROOT / "tests" / "fixtures" / "chat_templates"
EOS = {"llama2": "</s>", "llama3": "<|eot_id|>", "gemma": "<eos>", "mistral": "</s>", "phi3": "<|endoftext|>", "chatml": "<|im_end|>"}
STOPS = {"llama2": "[INST]", "llama3": "<|eot_id|>", "gemma": "<end_of_turn>", "phi3": "<|end|>", "chatml": "<|im_end|>",
         "mistral": "[INST]"}

TWO_TURNS = [
    {"role": "system", "content": "Rate the sentiment of financial news as JSON."},
    {"role": "user", "content": "Acme beat estimates and raised guidance."},
    {"role": "assistant", "content": '{"sentiment": 0.7, "confidence": 0.9}'},
    {"role": "user", "content": "Acme warned on margins."},
]
ZERO_SHOT = TWO_TURNS[:2]


def make_gguf(path: Path, *, template: str | None, arch: str = "llama", eos: str = "</s>") -> Path:
    """A small GGUF with a chat template, a vocabulary and one tensor (gguf-py's writer)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    if template is not None:
        w.add_chat_template(template)
    w.add_token_list(["<unk>", "<s>", eos, "hello"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("family", sorted(chat.FAMILIES))
def test_go_template_renders_what_the_ggufs_own_template_renders(tmp_path, family):
    source = (TEMPLATES / f"{family}.jinja").read_text()
    gguf = make_gguf(tmp_path / f"m.{family}.Q4_K_M.gguf", template=source, eos=EOS[family])
    spec = modelfile.write(gguf)
    assert spec.family == family and spec.family_source == "GGUF tokenizer.chat_template"
    assert spec.template_check == "equal"
    for conversation in (TWO_TURNS, ZERO_SHOT):
        ollama_prompt = gotemplate.render(spec.template, gotemplate.ollama_values(conversation))
        hf_prompt = chat.render_without_bos(source, conversation, bos="<s>", eos=EOS[family])
        assert ollama_prompt == hf_prompt
        assert ollama_prompt.count(conversation[-1]["content"]) == 1
    text = spec.path.read_text()
    assert spec.path.name == f"m.{family}.Q4_K_M.Modelfile"
    assert f"FROM ./{gguf.name}" in text.splitlines()
    assert f'PARAMETER stop "{STOPS[family]}"' in text.splitlines()
    assert "PARAMETER temperature 0.0" in text and "PARAMETER num_ctx 4096" in text


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (the Python evaluator is used instead)")
@pytest.mark.parametrize("family", sorted(chat.FAMILIES))
def test_real_go_text_template_agrees(tmp_path, family):
    data = gotemplate.ollama_values(TWO_TURNS)
    tmpl = chat.FAMILIES[family].go
    r = subprocess.run(["go", "run", str(ROOT / "tests" / "gotemplate" / "render.go")],
                       input=json.dumps({"template": tmpl, "data": data}), capture_output=True, text=True,
                       timeout=300, env={**os.environ, "GOCACHE": str(ROOT / ".cache" / "go-build")})
    assert r.returncode == 0, r.stderr
    assert r.stdout == gotemplate.render(tmpl, data)
    assert r.stdout == chat.render_without_bos((TEMPLATES / f"{family}.jinja").read_text(), TWO_TURNS, bos="<s>",
                                                 eos=EOS[family])


def test_evaluator_follows_go_semantics():
    assert gotemplate.render("a {{- /* comment */ -}} d", {}) == "ad"
    assert gotemplate.render("x  {{- `y` -}}  z", {}) == "xyz"
    assert gotemplate.render('{{ if and .A (eq .B "b" "c") }}yes{{ else }}no{{ end }}', {"A": 1, "B": "c"}) == "yes"
    assert gotemplate.render("{{ range $i, $m := .L }}{{ if $i }},{{ end }}{{ $m }}{{ end }}", {"L": [1, 2, 3]}) == "1,2,3"
    assert gotemplate.render("{{ len (slice .L 1) }}", {"L": [1, 2, 3]}) == "2"
    assert gotemplate.render("{{ $x := 1 }}{{ range .L }}{{ $x = . }}{{ end }}{{ $x }}", {"L": [4, 5]}) == "5"
    with pytest.raises(gotemplate.GoTemplateError, match="end"):
        gotemplate.parse("{{ if .A }}x")


def test_ollama_values_collate_like_the_server():
    v = gotemplate.ollama_values([{"role": "system", "content": "s1"}, {"role": "user", "content": "a"},
                                  {"role": "user", "content": "b"}])
    assert v["System"] == "s1"
    assert [m["Role"] for m in v["Messages"]] == ["system", "user"]
    assert v["Messages"][1]["Content"] == "a\n\nb"


def test_unknown_family_is_refused_with_the_override_named(tmp_path):
    gguf = make_gguf(tmp_path / "odd.gguf", template="{% for m in messages %}### {{ m['content'] }}\n{% endfor %}")
    with pytest.raises(ShootoutError) as err:
        modelfile.write(gguf)
    assert "--chat-format" in str(err.value) and "odd.gguf" in str(err.value)
    spec = modelfile.write(gguf, chat_format="chatml")
    assert spec.family == "chatml" and spec.family_source == "named"
    assert spec.template_check.startswith("differs")


def test_templateless_gguf_takes_its_architecture_default(tmp_path):
    gguf = make_gguf(tmp_path / "g.gguf", template=None, arch="gemma3", eos="<eos>")
    spec = modelfile.write(gguf, system="Answer with JSON only.")
    assert spec.family == "gemma" and "architecture gemma3" in spec.family_source
    assert spec.template_check == "equal to the built-in gemma Jinja template"
    assert 'SYSTEM """Answer with JSON only."""' in spec.path.read_text()
    gguf2 = make_gguf(tmp_path / "n.gguf", template=None, arch="mamba")
    with pytest.raises(ShootoutError, match="--chat-format"):
        modelfile.write(gguf2)


def test_truncated_gguf_is_one_clear_error(tmp_path):
    good = make_gguf(tmp_path / "t.gguf", template=None, arch="gemma3")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(gguf_meta.GGUFError, match="truncated"):
        gguf_meta.read(cut)
    r = shootout("modelfile", str(cut))
    assert r.returncode == 2
    assert "truncated" in r.stderr and "Traceback" not in r.stderr


def test_modelfile_command_on_the_embedded_gguf(tmp_path, embedded_gguf):
    gguf = tmp_path / "gemma3-270m.Q4_K_M.gguf"
    gguf.symlink_to(embedded_gguf)
    r = shootout("modelfile", str(gguf), "--system", "You rate news.", "--num-ctx", "2048")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "gemma3-270m.Q4_K_M.Modelfile").read_text()
    assert "FROM ./gemma3-270m.Q4_K_M.gguf" in text
    assert 'PARAMETER stop "<end_of_turn>"' in text and "PARAMETER num_ctx 2048" in text
    assert "gemma" in r.stdout


def test_config_chat_template_overrides_an_unknown_family(tmp_path):
    gguf = make_gguf(tmp_path / "odd.Q8_0.gguf", template="{% for m in messages %}## {{ m['content'] }}{% endfor %}")
    r = shootout("modelfile", str(gguf), "-c", str(tmp_path / "none.yaml"))
    assert r.returncode == 2 and "--chat-format" in r.stderr
    (tmp_path / "config.yaml").write_text(
        "models:\n  - name: odd\n    path: odd.Q8_0.gguf\n    family: odd\n    quant: Q8_0\n"
        "    options: {chat_template: phi3}\n")
    r = shootout("modelfile", str(gguf), "-c", str(tmp_path / "config.yaml"))
    assert r.returncode == 0, r.stderr
    assert "chat format phi3 (named)" in r.stdout
    assert 'PARAMETER stop "<|end|>"' in (tmp_path / "odd.Q8_0.Modelfile").read_text()
