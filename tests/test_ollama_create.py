"""Creating models in Ollama from exported GGUFs: blob upload skipped when the digest is there,
/api/create with the Modelfile's template, stops and parameters. An HTTP fixture follows Ollama's
documented blob and create endpoints (no Ollama server can be installed here); a `live` test runs
against a real server when OLLAMA_HOST answers."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from tests.conftest import loopback_server, shootout
from tests.test_ollama_backend import _live_host


class FakeOllamaCreate(BaseHTTPRequestHandler):
    """HEAD/POST /api/blobs/sha256:<hex> (200/404, 201 on upload, 400 on a digest mismatch) and
    POST /api/create (streamed status lines; 400 when a referenced blob is missing)."""

    blobs: dict[str, int] = {}
    uploads: list[str] = []
    creates: list[dict] = []
    protocol_version = "HTTP/1.1"

    def _json(self, code: int, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802
        digest = self.path.rsplit("/", 1)[-1]
        self._json(200 if self.path.startswith("/api/blobs/") and digest in self.blobs else 404)

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length", 0))
        if self.path.startswith("/api/blobs/"):
            digest = self.path.rsplit("/", 1)[-1]
            h, left = hashlib.sha256(), n
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                h.update(chunk)
                left -= len(chunk)
            if f"sha256:{h.hexdigest()}" != digest:
                return self._json(400, {"error": "digest mismatch"})
            self.blobs[digest] = n
            self.uploads.append(digest)
            return self._json(201)
        if self.path != "/api/create":
            return self._json(404, {"error": "not found"})
        body = json.loads(self.rfile.read(n))
        self.creates.append(body)
        missing = [d for d in body.get("files", {}).values() if d not in self.blobs]
        if missing:
            return self._json(400, {"error": f"blob {missing[0]} not found"})
        lines = [{"status": "parsing GGUF"}] + [{"status": f"using existing layer {d}"}
                                                 for d in body["files"].values()]
        lines += [{"status": "writing manifest"}, {"status": "success"}]
        data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_ollama_create():
    FakeOllamaCreate.blobs, FakeOllamaCreate.uploads, FakeOllamaCreate.creates = {}, [], []
    with loopback_server(FakeOllamaCreate) as url:
        yield url


def _ladder(tmp_path, embedded_gguf):
    from tests.test_modelfile import make_gguf

    a = tmp_path / "tiny.Q8_0.gguf"
    make_gguf(a, template=None, arch="gemma3", eos="<eos>")
    b = tmp_path / "tiny.Q4_K_M.gguf"
    b.symlink_to(embedded_gguf)
    return a, b


def test_create_uploads_once_and_sends_the_modelfile(tmp_path, embedded_gguf, fake_ollama_create):
    a, b = _ladder(tmp_path, embedded_gguf)
    args = ("modelfile", str(a), str(b), "--system", "Reply with JSON.", "--ollama-create")
    r = shootout(*args, env_extra={"OLLAMA_HOST": fake_ollama_create})
    assert r.returncode == 0, r.stderr
    digests = {f"sha256:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in (a, b)}
    assert set(FakeOllamaCreate.uploads) == digests
    assert "created tiny:q8_0, tiny:q4_k_m" in r.stdout and "2 uploaded, 0 already there" in r.stdout
    first = FakeOllamaCreate.creates[0]
    assert first["model"] == "tiny:q8_0" and first["files"] == {a.name: f"sha256:{hashlib.sha256(a.read_bytes()).hexdigest()}"}
    assert "<start_of_turn>" in first["template"] and first["system"] == "Reply with JSON."
    assert first["parameters"]["stop"] == ["<end_of_turn>", "<start_of_turn>"]
    assert first["parameters"]["num_ctx"] == 4096 and first["parameters"]["temperature"] == 0.0

    # again: the server has both blobs, nothing is uploaded, the models are created again
    r = shootout(*args, env_extra={"OLLAMA_HOST": fake_ollama_create})
    assert r.returncode == 0, r.stderr
    assert len(FakeOllamaCreate.uploads) == 2 and len(FakeOllamaCreate.creates) == 4
    assert "0 uploaded, 2 already there" in r.stdout


def test_create_error_from_the_server_is_one_clear_message(tmp_path, embedded_gguf, fake_ollama_create):
    from export import modelfile
    from export.ollama_create import OllamaCreator
    from core.errors import ShootoutError

    a, _ = _ladder(tmp_path, embedded_gguf)
    spec = modelfile.plan(a)
    c = OllamaCreator(fake_ollama_create)
    with pytest.raises(ShootoutError, match="blob sha256:00+ not found"):
        c.create("tiny:q8_0", spec, "0" * 64)  # never uploaded
    c.close()


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
def test_live_create_and_chat(tmp_path, embedded_gguf):
    gguf = tmp_path / "shootout-test.Q4_K_M.gguf"
    gguf.symlink_to(embedded_gguf)
    r = shootout("modelfile", str(gguf), "--ollama-create", env_extra={"OLLAMA_HOST": _live_host()})
    assert r.returncode == 0, r.stderr
    req = urllib.request.Request(_live_host() + "/api/chat", data=json.dumps({
        "model": "shootout-test:q4_k_m", "stream": False, "options": {"num_predict": 64},
        "messages": [{"role": "user", "content": "Say hello."}]}).encode())
    reply = json.loads(urllib.request.urlopen(req, timeout=300).read())
    assert reply["done_reason"] == "stop"  # ended by the end-of-turn stop, not by the token limit
