"""Creating models in Ollama from exported GGUFs, against tests/ollama_fixture.py (it answers blob and
create requests as server/routes.go and server/create.go do): blobs uploaded once, /api/create with the
Modelfile's template, stops and parameters; errors the server streams after its first status line
become one clear message. A `live` test runs against a real server when OLLAMA_HOST answers."""

from __future__ import annotations

import hashlib
import json
import urllib.request

import httpx
import pytest

from formats import chat
from core.errors import ShootoutError
from export import modelfile
from export.ollama_create import OllamaCreator
from tests.conftest import shootout
from tests.ollama_fixture import ollama  # noqa: F401
from tests.test_ollama_backend import _live_host


def _ladder(tmp_path, embedded_gguf):
    from tests.test_modelfile import make_gguf

    a = tmp_path / "tiny.Q8_0.gguf"
    make_gguf(a, template=None, arch="gemma3", eos="<eos>")
    b = tmp_path / "tiny.Q4_K_M.gguf"
    b.symlink_to(embedded_gguf)
    return a, b


def _digest(path) -> str:
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


@pytest.mark.slow
def test_create_uploads_once_and_the_server_shows_the_modelfile(tmp_path, embedded_gguf, ollama):
    a, b = _ladder(tmp_path, embedded_gguf)
    args = ("modelfile", str(a), str(b), "--system", "Reply with JSON.", "--ollama-create")
    r = shootout(*args, env_extra={"OLLAMA_HOST": ollama.url})
    assert r.returncode == 0, r.stderr
    assert set(ollama.uploads) == {_digest(a), _digest(b)}
    assert "created tiny:q8_0, tiny:q4_k_m" in r.stdout and "2 uploaded, 0 already there" in r.stdout
    create = next(body for m, p, body in ollama.requests if p == "/api/create")
    assert create["model"] == "tiny:q8_0" and create["files"] == {a.name: _digest(a)}
    assert create["template"] == chat.FAMILIES["gemma3"].go and create["system"] == "Reply with JSON."
    assert create["parameters"] == {"temperature": 0.0, "num_ctx": 4096, "stop": ["<end_of_turn>", "<start_of_turn>"]}

    # what the server then shows for the real GGUF: its quantization, size, our template and parameters
    show = httpx.post(ollama.url + "/api/show", json={"model": "tiny:q4_k_m"}).json()
    assert show["details"]["quantization_level"] == "Q4_K_M" and show["details"]["family"] == "gemma3"
    assert show["details"]["parameter_size"].endswith("M")
    assert show["template"] == chat.FAMILIES["gemma3"].go
    assert 'stop                           "<end_of_turn>"' in show["parameters"].splitlines()

    # again: the server has both blobs, nothing is uploaded, the models are created again
    r = shootout(*args, env_extra={"OLLAMA_HOST": ollama.url})
    assert r.returncode == 0, r.stderr
    assert len(ollama.uploads) == 2 and sum(p == "/api/create" for _, p, _ in ollama.requests) == 4
    assert "0 uploaded, 2 already there" in r.stdout
    # a blob sent anyway is answered 200, not 201: the server already has it
    assert httpx.post(ollama.url + f"/api/blobs/{_digest(a)}", content=a.read_bytes()).status_code == 200


def test_a_missing_blob_is_the_error_line_the_server_streams(tmp_path, embedded_gguf, ollama):
    a, _ = _ladder(tmp_path, embedded_gguf)
    c = OllamaCreator(ollama.url)
    with pytest.raises(ShootoutError) as err:
        c.create("tiny:q8_0", modelfile.plan(a), "0" * 64)  # never uploaded
    c.close()
    assert str(err.value).startswith("Ollama could not create 'tiny:q8_0': open ")
    assert "sha256-" + "0" * 64 + ": no such file or directory" in str(err.value)
    # as the server sends it: a status line first, then the error, in a 200 answer
    lines = httpx.post(ollama.url + "/api/create", json={"model": "x", "files": {"a.gguf": "sha256:" + "0" * 64}})
    assert lines.status_code == 200
    assert [list(json.loads(x)) for x in lines.text.splitlines()] == [["status"], ["error"]]


def test_a_template_the_server_cannot_parse_is_one_clear_message(tmp_path, embedded_gguf, ollama):
    a, _ = _ladder(tmp_path, embedded_gguf)
    spec = modelfile.plan(a)
    spec.template = "{{ range .Messages }}{{ .Content }}"  # no {{ end }}
    c = OllamaCreator(ollama.url)
    c.push_blob(a, _digest(a)[7:])
    with pytest.raises(ShootoutError, match=r"Ollama could not create 'tiny:q8_0': template error: .*end"):
        c.create("tiny:q8_0", spec, _digest(a)[7:])
    c.close()


def test_an_upload_that_does_not_match_its_digest_is_refused(tmp_path, embedded_gguf, ollama):
    a, _ = _ladder(tmp_path, embedded_gguf)
    c = OllamaCreator(ollama.url)
    with pytest.raises(ShootoutError, match=r"refused the upload of tiny.Q8_0.gguf \(400: digest mismatch"):
        c.push_blob(a, "1" * 64)
    c.close()
    assert ollama.uploads == []


def test_create_without_a_server_names_ollama_host(tmp_path, embedded_gguf):
    import socket

    a, _ = _ladder(tmp_path, embedded_gguf)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = shootout("modelfile", str(a), "--ollama-create", env_extra={"OLLAMA_HOST": f"127.0.0.1:{port}"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "OLLAMA_HOST" in r.stderr and f"127.0.0.1:{port}" in r.stderr
    assert (tmp_path / "tiny.Q8_0.Modelfile").is_file()  # the Modelfile is kept


@pytest.mark.live
@pytest.mark.skipif(_live_host() is None, reason="no Ollama server answers at OLLAMA_HOST")
def test_live_create_show_and_chat(tmp_path, embedded_gguf):
    gguf = tmp_path / "shootout-test.Q4_K_M.gguf"
    gguf.symlink_to(embedded_gguf)
    r = shootout("modelfile", str(gguf), "--ollama-create", env_extra={"OLLAMA_HOST": _live_host()})
    assert r.returncode == 0, r.stderr
    show = json.loads(urllib.request.urlopen(urllib.request.Request(
        _live_host() + "/api/show", data=json.dumps({"model": "shootout-test:q4_k_m"}).encode())).read())
    assert show["template"] == chat.FAMILIES["gemma3"].go and show["details"]["quantization_level"] == "Q4_K_M"
    req = urllib.request.Request(_live_host() + "/api/chat", data=json.dumps({
        "model": "shootout-test:q4_k_m", "stream": False, "options": {"num_predict": 64},
        "messages": [{"role": "user", "content": "Say hello."}]}).encode())
    reply = json.loads(urllib.request.urlopen(req, timeout=300).read())
    assert reply["done_reason"] == "stop"  # ended by the end-of-turn stop, not by the token limit


@pytest.mark.slow
def test_create_on_several_hosts_uploads_each_blob_once_per_host(tmp_path, embedded_gguf, ollama):
    """Provisioning a fleet: every host gets every model; a host that has a blob is not sent it again."""
    from tests.conftest import loopback_server
    from tests.ollama_fixture import FakeOllama, make_handler

    other = FakeOllama()
    with loopback_server(make_handler(other)) as url2:
        other.url = url2
        a, b = _ladder(tmp_path, embedded_gguf)
        args = ("modelfile", str(a), str(b), "--ollama-create", "--ollama-host", ollama.url, "--ollama-host", url2)
        r = shootout(*args)
        assert r.returncode == 0, r.stderr
        for host in (ollama, other):
            assert sorted(host.uploads) == sorted([_digest(a), _digest(b)])  # each blob once on each host
            assert sum(p == "/api/create" for _, p, _ in host.requests) == 2
        assert r.stdout.count("2 uploaded, 0 already there") == 2
        r = shootout(*args)
        assert r.returncode == 0 and r.stdout.count("0 uploaded, 2 already there") == 2
        assert len(ollama.uploads) == len(other.uploads) == 2
    other.close()
