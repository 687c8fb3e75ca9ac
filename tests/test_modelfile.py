"""Modelfiles: per chat family and version, the Go TEMPLATE renders the prompt of the GGUF's own Jinja
template (templates in each family's format, written for these tests: tests/fixtures/chat_templates/
README.md) and, for llama3, phi3, chatml and gemma2, exactly the prompt of Ollama's official template
(its prompts for our conversations, stored in tests/fixtures/ollama_prompts); gemma3 and mistral-v3
differ from Ollama's in one stated way each. Renderings use core/gotemplate.py and, where Go is
installed, Go's own text/template. Detection of family versions; Ollama ignoring a TEMPLATE when the
GGUF's template mentions tools (server/images.go); `shootout modelfile` on real GGUFs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from formats import chat
from formats import gotemplate
from formats import gguf_meta
from export import modelfile
from core.errors import ShootoutError
from tests import ollama_prompts
from tests.conftest import ROOT, shootout

TEMPLATES = ROOT / "tests" / "fixtures" / "chat_templates"
CONVERSATIONS = ollama_prompts.CONVERSATIONS
# the special tokens of each family's GGUFs (what llama.cpp hands the Jinja template as bos/eos)
EOS = {"llama2": "</s>", "llama3": "<|eot_id|>", "gemma2": "<eos>", "gemma3": "<eos>", "mistral-v1": "</s>",
       "mistral-v3": "</s>", "phi3": "<|endoftext|>", "chatml": "<|im_end|>"}
BOS = {"llama3": "<|begin_of_text|>", "gemma2": "<bos>", "gemma3": "<bos>"}
STOPS = {"llama2": "[INST]", "llama3": "<|eot_id|>", "gemma2": "<end_of_turn>", "gemma3": "<end_of_turn>",
         "phi3": "<|end|>", "chatml": "<|im_end|>", "mistral-v1": "[INST]", "mistral-v3": "[INST]"}

FEW_SHOT = chat.FEW_SHOT_PROBE  # system + five few-shot turns + the item
assert [m["role"] for m in FEW_SHOT] == ["system"] + ["user", "assistant"] * 5 + ["user"]
NO_SYSTEM = FEW_SHOT[1:]


def make_gguf(path: Path, *, template: str | None, arch: str = "llama", eos: str = "</s>", bos: str = "<s>") -> Path:
    """A small GGUF with a chat template, a vocabulary and one tensor (gguf-py's writer)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    if template is not None:
        w.add_chat_template(template)
    w.add_token_list(["<unk>", bos, eos, "hello"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gguf_prompt(family: str, conversation: list[dict]) -> str:
    """The prompt the GGUF's own template gives (what llama.cpp renders), without its leading BOS.
    Gemma 2's and Mistral v1's templates refuse a system role: there the system prompt goes into the
    first user turn the family's way (Gemma: a newline, as Ollama does; Mistral: a blank line)."""
    source = (TEMPLATES / f"{family}.jinja").read_text()
    try:
        return chat.render_without_bos(source, conversation, bos=BOS.get(family, "<s>"), eos=EOS[family])
    except chat.TemplateError:
        return chat.render_without_bos(source, chat.fold_system(family, conversation), bos=BOS.get(family, "<s>"),
                                       eos=EOS[family])


def official(name: str, case: str) -> str:
    """The prompt Ollama's official template ``name`` gives for the conversation ``case`` (stored)."""
    return ollama_prompts.expected(name, case)


# the default system prompt of tests/fixtures/chat_templates/chatml.jinja (Qwen's templates have one)
CHATML_DEFAULT_SYSTEM = "<|im_start|>system\nYou are an assistant that answers carefully.<|im_end|>\n"


# --------------------------------------------------------------------------- our TEMPLATE vs the GGUF's template

@pytest.mark.parametrize("family", sorted(chat.FAMILIES))
def test_template_renders_the_ggufs_own_prompt_for_a_few_shot_conversation(tmp_path, family):
    source = (TEMPLATES / f"{family}.jinja").read_text()
    gguf = make_gguf(tmp_path / f"m.{family}.Q4_K_M.gguf", template=source, eos=EOS[family],
                     bos=BOS.get(family, "<s>"))
    spec = modelfile.write(gguf)
    assert spec.family == family and spec.family_source == "GGUF tokenizer.chat_template"
    assert spec.template_check.startswith("equal")
    for conversation in (FEW_SHOT, FEW_SHOT[:2], NO_SYSTEM):
        ollama_prompt = gotemplate.render(spec.template, gotemplate.ollama_values(conversation))
        for m in conversation:  # every turn reaches the prompt, once
            assert ollama_prompt.count(m["content"]) == 1
        if family == "chatml" and conversation is NO_SYSTEM:  # a default system prompt, as Qwen's templates add
            assert gguf_prompt(family, conversation) == CHATML_DEFAULT_SYSTEM + ollama_prompt
            continue
        assert ollama_prompt == gguf_prompt(family, conversation)
    text = spec.path.read_text()
    assert spec.path.name == f"m.{family}.Q4_K_M.Modelfile"
    assert f"FROM ./{gguf.name}" in text.splitlines()
    assert f'PARAMETER stop "{STOPS[family]}"' in text.splitlines()
    assert "PARAMETER temperature 0.0" in text and "PARAMETER num_ctx 4096" in text


def test_where_each_version_puts_the_system_prompt():
    """The differences the family split exists for, on the GGUFs' own templates."""
    sys, first, last = FEW_SHOT[0]["content"], FEW_SHOT[1]["content"], FEW_SHOT[-1]["content"]
    assert f"<start_of_turn>user\n{sys}\n{first}<end_of_turn>" in gguf_prompt("gemma2", FEW_SHOT)
    assert f"<start_of_turn>user\n{sys}\n\n{first}<end_of_turn>" in gguf_prompt("gemma3", FEW_SHOT)
    v1, v3 = gguf_prompt("mistral-v1", FEW_SHOT), gguf_prompt("mistral-v3", FEW_SHOT)
    assert v1.startswith(f"[INST] {sys}\n\n{first} [/INST]{FEW_SHOT[2]['content']}</s>")
    assert v3.startswith(f"[INST] {first}[/INST] {FEW_SHOT[2]['content']}</s>")
    assert v3.endswith(f"[INST] {sys}\n\n{last}[/INST]")  # Mistral's v3 template: before the last user turn
    for family in ("gemma2", "mistral-v1"):  # these formats refuse a system role, as their models' templates do
        with pytest.raises(chat.TemplateError, match="system"):
            chat.render((TEMPLATES / f"{family}.jinja").read_text(), FEW_SHOT)
        chat.render((TEMPLATES / f"{family}.jinja").read_text(), NO_SYSTEM)
    for family in ("llama2", "gemma2", "gemma3", "mistral-v1", "mistral-v3"):  # and insist on alternation
        with pytest.raises(chat.TemplateError, match="alternate"):
            chat.render((TEMPLATES / f"{family}.jinja").read_text(), NO_SYSTEM[:1] + NO_SYSTEM[:1])


# --------------------------------------------------------------------------- our TEMPLATE vs Ollama's official ones

def test_the_stored_prompts_are_for_our_conversations():
    assert CONVERSATIONS["few-shot"] == FEW_SHOT and CONVERSATIONS["few-shot-no-system"] == NO_SYSTEM
    assert [m["role"] for m in CONVERSATIONS["system-user-assistant-user"]] == ["system", "user", "assistant", "user"]
    for name in ollama_prompts.TEMPLATE_NAMES:
        for case, conversation in CONVERSATIONS.items():
            prompt = official(name, case)
            for m in conversation:  # every turn of ours is in the stored prompt
                assert m["content"] in prompt, (name, case)
    assert set(ollama_prompts.TEMPLATE_NAMES) == {"chatml", "gemma-instruct", "gemma3-instruct", "llama2-chat",
                                                  "llama3-instruct", "mistral-instruct", "phi-3"}


@pytest.mark.parametrize("family", ["llama3", "phi3", "chatml", "gemma2"])
def test_template_gives_exactly_the_prompt_of_ollamas_official_template(family):
    name = chat.FAMILIES[family].ollama
    for case, conversation in CONVERSATIONS.items():
        assert chat.render_go(family, conversation) == official(name, case), case
    assert official(name, "few-shot") == gguf_prompt(family, FEW_SHOT)


def test_gemma3_differs_from_ollamas_official_template_only_by_its_trailing_newline():
    for case, conversation in CONVERSATIONS.items():
        assert official("gemma3-instruct", case) == chat.render_go("gemma3", conversation) + "\n", case


def test_mistral_v3_differs_from_ollamas_official_template_only_in_where_the_system_prompt_goes():
    # no system prompt: byte for byte the same ([INST] u[/INST] a</s>)
    for case in ("few-shot-no-system", "user", "user-assistant-user"):
        assert chat.render_go("mistral-v3", CONVERSATIONS[case]) == official("mistral-instruct", case)
    sys = FEW_SHOT[0]["content"]
    # one user turn: the first is the last, so the system prompt is in the same place
    assert chat.render_go("mistral-v3", CONVERSATIONS["system-user"]) == official("mistral-instruct", "system-user")
    for case, without in (("few-shot", "few-shot-no-system"), ("system-user-assistant-user", "user-assistant-user")):
        ours, theirs = chat.render_go("mistral-v3", CONVERSATIONS[case]), official("mistral-instruct", case)
        # Ollama's puts it in the first [INST], Mistral's v3 template (and ours) before the last user turn
        assert theirs == official("mistral-instruct", without).replace("[INST] ", f"[INST] {sys}\n\n", 1)
        head, mark, tail = official("mistral-instruct", without).rpartition("[INST] ")
        assert ours == head + mark + f"{sys}\n\n" + tail


def test_mistral_v1_and_llama2_are_not_ollamas_official_rendering():
    """Recorded, not a target: Ollama's mistral-instruct is the later format, its llama2-chat differs too."""
    assert chat.render_go("mistral-v1", NO_SYSTEM) != official("mistral-instruct", "few-shot-no-system")
    assert chat.render_go("mistral-v1", NO_SYSTEM).startswith(f"[INST] {NO_SYSTEM[0]['content']} [/INST]"
                                                              f"{NO_SYSTEM[1]['content']}</s>")
    assert chat.render_go("llama2", NO_SYSTEM) != official("llama2-chat", "few-shot-no-system")
    # the one conversation where they meet: a system prompt and a single question
    assert chat.render_go("llama2", CONVERSATIONS["system-user"]) == official("llama2-chat", "system-user")


@pytest.mark.skipif(not os.environ.get("OLLAMA_SOURCE"),
                    reason="set OLLAMA_SOURCE to an Ollama checkout to re-render its official templates")
def test_stored_prompts_are_what_ollamas_templates_render_now():
    """Developer check: tests/fixtures/ollama_prompts/regenerate.py --check against a checkout."""
    r = subprocess.run([sys.executable, str(ollama_prompts.PROMPTS / "regenerate.py"), os.environ["OLLAMA_SOURCE"],
                        "--check"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- Go's own text/template

@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    if shutil.which("go") is None:
        pytest.skip("Go is not installed (the Python evaluator is used instead)")
    exe = tmp_path_factory.mktemp("go") / "render"
    r = subprocess.run(["go", "build", "-o", str(exe), str(ROOT / "tests" / "gotemplate" / "render.go")],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "GOCACHE": str(ROOT / ".cache" / "go-build")})
    assert r.returncode == 0, r.stderr

    def render(template: str, conversation: list[dict]) -> str:
        out = subprocess.run([str(exe)], input=json.dumps({"template": template,
                                                           "data": gotemplate.ollama_values(conversation)}),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    return render


@pytest.mark.parametrize("family", sorted(chat.FAMILIES))
def test_real_go_text_template_renders_our_template_the_same(go_render, family):
    for conversation in (FEW_SHOT, FEW_SHOT[:2]):
        assert go_render(chat.FAMILIES[family].go, conversation) == gguf_prompt(family, conversation)


@pytest.mark.parametrize("family", ["llama3", "phi3", "chatml", "gemma2"])
def test_real_go_text_template_renders_our_template_as_ollamas_official_one(go_render, family):
    for case, conversation in CONVERSATIONS.items():
        assert go_render(chat.FAMILIES[family].go, conversation) == official(chat.FAMILIES[family].ollama, case)


# constructs the official templates use (system messages gathered with printf, continue, the last
# message found by slicing, $.System beside .Messages), in templates of ours
GO_CONSTRUCTS = [
    '{{- $s := "" }}{{ range .Messages }}{{ if eq .Role "system" }}{{ if not $s }}{{ $s = .Content }}'
    '{{ else }}{{ $s = printf "%s\\n\\n%s" $s .Content }}{{ end }}{{ continue }}{{ end }}'
    '<{{ .Role }}>{{ .Content }}\n{{ end }}{{ if $s }}[{{ $s }}]{{ end }}',
    '{{- range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}'
    '{{ if and (eq $i 1) $.System }}({{ $.System }}){{ end }}{{ .Content }}{{ if $last }}|end{{ end }}\n{{ end }}',
    '{{ if .System }}{{ .System }}\n{{ end }}{{ range $i, $m := .Messages }}{{ if $i }}, {{ end }}'
    '{{ $m.Role }}={{ len $m.Content }}{{ if gt $i 2 }}{{ break }}{{ end }}{{ end }}',
]


@pytest.mark.parametrize("template", GO_CONSTRUCTS)
def test_real_go_text_template_and_the_evaluator_agree_on_the_constructs_ollamas_templates_use(go_render,
                                                                                               template):
    for conversation in CONVERSATIONS.values():
        # a second system message after the first user turn (two in a row would be merged into one)
        at = next(i for i, m in enumerate(conversation) if m["role"] == "user") + 1
        second = conversation[:at] + [{"role": "system", "content": "Be brief."}] + conversation[at:]
        for conv in (conversation, second):
            assert gotemplate.render(template, gotemplate.ollama_values(conv)) == go_render(template, conv)


# --------------------------------------------------------------------------- detection

@pytest.mark.parametrize("family", sorted(chat.FAMILIES))
def test_each_familys_template_is_detected_as_its_family_and_version(family):
    source = (TEMPLATES / f"{family}.jinja").read_text()
    assert chat.detect(source, "llama", bos=BOS.get(family, "<s>"), eos=EOS[family])[0] == family


def test_templateless_gguf_takes_its_architectures_version(tmp_path):
    for arch, family in (("gemma", "gemma2"), ("gemma2", "gemma2"), ("gemma3", "gemma3")):
        spec = modelfile.write(make_gguf(tmp_path / f"{arch}.gguf", template=None, arch=arch, eos="<eos>"),
                               system="Answer with JSON only.")
        assert spec.family == family and f"architecture {arch}" in spec.family_source
        assert spec.template_check == f"equal to the built-in {family} Jinja template"
        assert 'SYSTEM """Answer with JSON only."""' in spec.path.read_text()
    with pytest.raises(ShootoutError, match="--chat-format"):
        modelfile.write(make_gguf(tmp_path / "n.gguf", template=None, arch="mamba"))


def test_earlier_family_names_still_work():
    assert chat.detect(None, None, "gemma") == ("gemma3", "named")
    assert chat.detect(None, None, "mistral") == ("mistral-v1", "named")
    assert "gemma" in chat.FAMILIES and chat.FAMILIES["gemma"] is chat.FAMILIES["gemma3"]
    assert "gemma" not in list(chat.FAMILIES)  # listings name the families, not the old names
    assert chat.resolve(None, "gemma")[1] == "built-in 'gemma3'"
    with pytest.raises(chat.TemplateError, match="gemma2, .*mistral-v3"):
        chat.detect(None, None, "gemma4")


# --------------------------------------------------------------------------- finding 8

def test_ollama_ignoring_the_template_is_said_in_the_modelfile_and_the_output(tmp_path):
    gguf = make_gguf(tmp_path / "l31.Q4_K_M.gguf", template=(TEMPLATES / "llama3.1.jinja").read_text(),
                     eos="<|eot_id|>", bos="<|begin_of_text|>")
    r = shootout("modelfile", str(gguf))
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "chat format llama3" in out
    assert "Ollama ignores this TEMPLATE and renders the GGUF's own template (it mentions tools)" in out
    assert "OLLAMA_GO_TEMPLATE=1" in out
    text = (tmp_path / "l31.Q4_K_M.Modelfile").read_text()
    assert text.splitlines()[1].startswith("# note: Ollama ignores this TEMPLATE")
    # a template without tools or thinking: Ollama uses the TEMPLATE, nothing is said
    plain = modelfile.write(make_gguf(tmp_path / "l3.gguf", template=(TEMPLATES / "llama3.jinja").read_text(),
                                      eos="<|eot_id|>", bos="<|begin_of_text|>"))
    assert plain.ollama_note is None and plain.template_check == "equal"
    assert chat.ollama_prefers_gguf_template("{% if '<think>' in c %}</think>{% endif %}").startswith(
        "Ollama ignores this TEMPLATE and renders the GGUF's own template (it mentions thinking)")


# --------------------------------------------------------------------------- the evaluator and the command

def test_evaluator_follows_go_semantics():
    assert gotemplate.render("a {{- /* comment */ -}} d", {}) == "ad"
    assert gotemplate.render("x  {{- `y` -}}  z", {}) == "xyz"
    assert gotemplate.render('{{ if and .A (eq .B "b" "c") }}yes{{ else }}no{{ end }}', {"A": 1, "B": "c"}) == "yes"
    assert gotemplate.render("{{ range $i, $m := .L }}{{ if $i }},{{ end }}{{ $m }}{{ end }}", {"L": [1, 2, 3]}) == "1,2,3"
    assert gotemplate.render("{{ len (slice .L 1) }}", {"L": [1, 2, 3]}) == "2"
    assert gotemplate.render("{{ $x := 1 }}{{ range .L }}{{ $x = . }}{{ end }}{{ $x }}", {"L": [4, 5]}) == "5"
    assert gotemplate.render("{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}"
                             "{{ end }}{{ . }}{{ end }}", {"L": [1, 2, 3, 4, 5]}) == "13"
    assert gotemplate.render('{{ printf "%s and %s" .A .B }}', {"A": "x", "B": "y"}) == "x and y"
    with pytest.raises(gotemplate.GoTemplateError, match="end"):
        gotemplate.parse("{{ if .A }}x")
    with pytest.raises(gotemplate.GoTemplateError, match="outside"):
        gotemplate.parse("{{ break }}")


def test_ollama_values_collate_like_the_server():
    v = gotemplate.ollama_values([{"role": "system", "content": "s1"}, {"role": "user", "content": "a"},
                                  {"role": "user", "content": "b"}])
    assert v["System"] == "s1"
    assert [m["Role"] for m in v["Messages"]] == ["system", "user"]
    assert v["Messages"][1]["Content"] == "a\n\nb"
    assert v["IsThinkSet"] is False and gotemplate.ollama_values([], think=False)["IsThinkSet"] is True


def test_unknown_family_is_refused_with_the_override_named(tmp_path):
    gguf = make_gguf(tmp_path / "odd.gguf", template="{% for m in messages %}### {{ m['content'] }}\n{% endfor %}")
    with pytest.raises(ShootoutError) as err:
        modelfile.write(gguf)
    assert "--chat-format" in str(err.value) and "odd.gguf" in str(err.value)
    spec = modelfile.write(gguf, chat_format="chatml")
    assert spec.family == "chatml" and spec.family_source == "named"
    assert spec.template_check.startswith("differs")


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
    assert "chat format gemma3 (architecture gemma3" in r.stdout
    parsed = modelfile.parse(text)
    assert parsed.template == chat.FAMILIES["gemma3"].go and parsed.system == "You rate news."
    assert parsed.parameters == {"stop": ["<end_of_turn>", "<start_of_turn>"], "temperature": [0.0], "num_ctx": [2048]}


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
