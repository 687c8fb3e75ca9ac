"""`shootout doctor` against tests/ollama_fixture.py through the real command line: a healthy host passes;
a wrong template or parameters, a model partly in CPU memory, a capped context, a reply that does not
fit the config's task, an old server and an absent one are each reported as what a user would fix.
A `live` test runs the doctor against a real server when OLLAMA_HOST answers."""

from __future__ import annotations

import shutil

import pytest

from formats import chat
from tests.conftest import ROOT, shootout
from tests.ollama_fixture import FakeModel, ollama  # noqa: F401
from tests.test_ollama_backend import _live_host, _live_model

TAG = "tiny:q4_k_m"


def _rows(stdout: str) -> dict[str, str]:
    """check name -> the rest of its table row (status and detail), from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split("│")
        if len(parts) != 6:
            continue
        model, check, status, detail = (c.strip() for c in parts[1:5])
        if check and status in ("ok", "warn", "FAIL"):
            rows[check] = f"{status} {detail}"
        elif not check and rows and detail:  # a wrapped detail line
            last = list(rows)[-1]
            rows[last] += " " + detail
    return rows


def _doctor(*args, host: str):
    r = shootout("doctor", *args, env_extra={"OLLAMA_HOST": host})
    assert "Traceback" not in r.stderr
    return r, _rows(r.stderr + r.stdout)


def _created(tmp_path, embedded_gguf, ollama, *extra):
    """A model created the way users create them: `shootout modelfile --ollama-create`."""
    gguf = tmp_path / "tiny.Q4_K_M.gguf"
    gguf.symlink_to(embedded_gguf)
    r = shootout("modelfile", str(gguf), "--num-ctx", "2048", "--ollama-create", *extra,
                 env_extra={"OLLAMA_HOST": ollama.url})
    assert r.returncode == 0, r.stderr
    return tmp_path / "tiny.Q4_K_M.Modelfile"


@pytest.mark.slow
def test_a_healthy_host_passes_every_check(tmp_path, embedded_gguf, ollama):
    modelfile = _created(tmp_path, embedded_gguf, ollama)
    r, rows = _doctor("--tag", TAG, "--modelfile", str(modelfile), "-c", str(tmp_path / "none.yaml"),
                      host=ollama.url)
    assert r.returncode == 0, r.stderr + r.stdout
    assert list(rows) == ["server", "model", "template", "parameters", "context", "VRAM", "smoke call"]
    assert all(v.startswith("ok") for v in rows.values()), rows
    assert "Ollama 0.33.0" in rows["server"] and "Q4_K_M" in rows["model"]
    assert "2048 tokens allocated, as asked" in rows["context"]
    assert "a valid sentiment reply" in rows["smoke call"]


def test_what_differs_from_the_modelfile_and_a_partial_offload_are_reported(tmp_path, ollama):
    ollama.add(FakeModel(TAG, template=chat.FAMILIES["gemma2"].go, vram_share=0.6,
                         parameters={"stop": ["<end_of_turn>", "<start_of_turn>"], "temperature": 0.7}))
    modelfile = tmp_path / "tiny.Q4_K_M.Modelfile"
    modelfile.write_text(f'FROM ./tiny.Q4_K_M.gguf\nTEMPLATE """{chat.FAMILIES["gemma3"].go}"""\n'
                         'PARAMETER stop "<end_of_turn>"\nPARAMETER stop "<start_of_turn>"\n'
                         "PARAMETER temperature 0.0\nPARAMETER num_ctx 2048\n")
    r, rows = _doctor("--tag", TAG, "--modelfile", str(modelfile), "-c", str(tmp_path / "none.yaml"),
                      host=ollama.url)
    assert r.returncode == 2
    assert rows["template"].startswith("FAIL the server's template differs from tiny.Q4_K_M.Modelfile's at char")
    assert "re-create the model" in rows["template"]
    assert rows["parameters"] == ("FAIL temperature is 0.7 (Modelfile: 0.0); num_ctx is missing (Modelfile: 2048)")
    assert rows["VRAM"].startswith("warn 60% of 0.54 GB in GPU memory")
    assert rows["smoke call"].startswith("ok")
    assert "2 check(s) failed: tiny:q4_k_m template; tiny:q4_k_m parameters" in " ".join((r.stdout + r.stderr).split())


@pytest.mark.slow
def test_ollama_rendering_the_ggufs_own_template_is_named_with_its_fix(tmp_path, embedded_gguf, ollama):
    tools = (ROOT / "tests" / "fixtures" / "chat_templates" / "llama3.1.jinja").read_text()
    modelfile = _created(tmp_path, embedded_gguf, ollama)
    ollama.find(TAG).chat_template = tools  # as a GGUF carrying Llama 3.1's template would
    r, rows = _doctor("--tag", TAG, "--modelfile", str(modelfile), "-c", str(tmp_path / "none.yaml"),
                      host=ollama.url)
    assert r.returncode == 2
    assert "the server renders with the GGUF's own Jinja template" in rows["template"]
    assert "OLLAMA_GO_TEMPLATE=1" in rows["template"]
    ollama.go_template_env = "1"  # the server started with OLLAMA_GO_TEMPLATE=1
    r, rows = _doctor("--tag", TAG, "--modelfile", str(modelfile), "-c", str(tmp_path / "none.yaml"),
                      host=ollama.url)
    assert r.returncode == 0 and rows["template"].startswith("ok")


def test_a_context_capped_below_the_runs_and_an_invalid_reply_fail(tmp_path, ollama):
    ollama.add(FakeModel(TAG, train_ctx=4096, reply=lambda body: "Positive, I think."))
    r, rows = _doctor("--tag", TAG, "--num-ctx", "8192", "-c", str(tmp_path / "none.yaml"), host=ollama.url)
    assert r.returncode == 2
    assert rows["template"] == "ok gguf-shootout's gemma3 TEMPLATE"
    assert rows["context"].startswith("FAIL 4096 tokens allocated, not the 8192 asked")
    assert rows["smoke call"].startswith("FAIL the reply does not fit the task's schema")
    assert "'Positive, I think.'" in rows["smoke call"]


@pytest.mark.slow
def test_the_smoke_call_uses_the_configs_task(tmp_path, ollama):
    shutil.copytree(ROOT / "examples" / "spam" / "data", tmp_path / "data")
    text = (ROOT / "examples" / "spam" / "config.yaml").read_text()
    models = text.index("models:")
    text = text[:models] + ("models:\n  - {name: spam-olla, backend: ollama, tag: 'tiny:q4_k_m', family: tiny, "
                            "quant: Q4_K_M}\noutput:\n  reports_dir: reports\n")
    (tmp_path / "config.yaml").write_text(text)
    model = ollama.add(FakeModel(TAG, reply=lambda body: "spam"))
    r, rows = _doctor("-c", str(tmp_path / "config.yaml"), host=ollama.url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert rows["smoke call"].startswith("ok a valid spam reply")
    model.reply = lambda body: '{"sentiment": 0.5}'  # a sentiment answer is not a spam/ham label
    r, rows = _doctor("-c", str(tmp_path / "config.yaml"), "-m", "spam-olla", host=ollama.url)
    assert r.returncode == 2 and rows["smoke call"].startswith("FAIL the reply does not fit the task's schema")


@pytest.mark.slow
def test_an_old_server_a_missing_model_and_no_server_are_clear(tmp_path, ollama):
    ollama.version = "0.11.4"
    r, rows = _doctor("--tag", TAG, "-c", str(tmp_path / "none.yaml"), host=ollama.url)
    assert r.returncode == 2 and list(rows) == ["server"]
    assert "Ollama 0.11.4" in rows["server"] and "upgrade Ollama to 0.12.6 or later" in rows["server"]
    ollama.version = "0.33.0"
    r, rows = _doctor("--tag", "llama3:8b", "-c", str(tmp_path / "none.yaml"), host=ollama.url)
    assert r.returncode == 2 and rows["model"].startswith("FAIL") and "ollama pull llama3:8b" in rows["model"]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r, _ = _doctor("--tag", TAG, "-c", str(tmp_path / "none.yaml"), host=f"127.0.0.1:{port}")
    assert r.returncode == 2 and f"no Ollama server answers at http://127.0.0.1:{port}" in " ".join(r.stderr.split())
    assert "OLLAMA_HOST" in r.stderr
    r, _ = _doctor("-c", str(tmp_path / "none.yaml"), host=ollama.url)
    assert r.returncode == 2 and "config not found" in r.stderr and "--tag" in r.stderr


@pytest.mark.live
@pytest.mark.skipif(_live_host() is None, reason="no Ollama server answers at OLLAMA_HOST")
def test_live_doctor_checks_a_real_server(tmp_path):
    r, rows = _doctor("--tag", _live_model(), "-c", str(tmp_path / "none.yaml"), "--num-ctx", "4096",
                      host=_live_host())
    assert r.returncode in (0, 2), r.stderr
    assert {"server", "model", "template", "context", "VRAM", "smoke call"} <= set(rows)
    assert rows["server"].startswith("ok Ollama ")
    assert rows["context"].startswith("ok 4096 tokens allocated")
