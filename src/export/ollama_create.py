"""Create models in Ollama from exported GGUFs, through Ollama's HTTP API.

1. ``HEAD /api/blobs/sha256:<digest>``: 200 means the server has the file already, so nothing is
   sent; 404 means ``POST /api/blobs/sha256:<digest>`` with the file as the body: 201 Created, 200
   when the server got it meanwhile, 400 when the bytes do not hash to the digest
   (server/routes.go HeadBlobHandler, CreateBlobHandler).
2. ``POST /api/create`` with ``files`` (name -> digest), ``template``, ``system`` and
   ``parameters``, streaming status lines until ``success``. Requests the server refuses outright
   (a bad digest or name) answer 400 before any line; once lines went out, an error is one more
   line ``{"error": ...}`` in a 200 answer: a missing blob, a TEMPLATE that does not parse
   (server/create.go CreateHandler, server/routes.go streamResponse).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from export.modelfile import ModelfileSpec
from core.errors import ShootoutError
from core.hosts import normalize_host

CHUNK = 1 << 20


def sha256_file(path: str | Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest()


class OllamaCreator:
    def __init__(self, host: str | None = None, timeout: float = 600.0):
        import httpx

        self.host = normalize_host(host)
        self._http = httpx.Client(base_url=self.host, timeout=timeout)
        self.uploaded: list[str] = []
        self.skipped: list[str] = []

    def close(self):
        self._http.close()

    def _request(self, method: str, url: str, **kw):
        import httpx

        try:
            return self._http.request(method, url, **kw)
        except httpx.ConnectError:
            raise ShootoutError(f"no Ollama server answers at {self.host}",
                                "start it with `ollama serve`, or set OLLAMA_HOST to where it runs") from None
        except httpx.TransportError as exc:
            raise ShootoutError(f"Ollama at {self.host} stopped answering ({exc})",
                                "check the server and run the command again (finished uploads are kept)") from None

    def push_blob(self, path: Path, digest: str, progress: Callable[[int], None] | None = None) -> bool:
        """Upload ``path`` unless the server has it; returns True when it was sent."""
        ref = f"/api/blobs/sha256:{digest}"
        r = self._request("HEAD", ref)
        if r.status_code == 200:
            self.skipped.append(digest)
            if progress:
                progress(path.stat().st_size)
            return False

        def body() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    if progress:
                        progress(len(chunk))
                    yield chunk

        r = self._request("POST", ref, content=body(),
                          headers={"Content-Length": str(path.stat().st_size)})
        if r.status_code not in (200, 201):
            raise ShootoutError(f"Ollama refused the upload of {path.name} ({r.status_code}: {_error(r)})")
        self.uploaded.append(digest)
        return True

    def create(self, name: str, spec: ModelfileSpec, digest: str,
               status: Callable[[str], None] | None = None) -> None:
        import json

        payload = {"model": name, "files": {spec.gguf.name: f"sha256:{digest}"}, "template": spec.template,
                   "parameters": {**spec.parameters, "stop": list(spec.stop)}, "stream": True}
        if spec.system:
            payload["system"] = spec.system
        try:
            import httpx

            with self._http.stream("POST", "/api/create", json=payload) as r:
                if r.status_code != 200:
                    r.read()
                    raise ShootoutError(f"Ollama could not create '{name}' ({r.status_code}: {_error(r)})")
                last = None
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if "error" in msg:
                        raise ShootoutError(f"Ollama could not create '{name}': {msg['error']}")
                    last = msg.get("status")
                    if status and last:
                        status(last)
                if last != "success":
                    raise ShootoutError(f"Ollama stopped creating '{name}' before success (last status: {last})")
        except httpx.ConnectError:
            raise ShootoutError(f"no Ollama server answers at {self.host}",
                                "start it with `ollama serve`, or set OLLAMA_HOST to where it runs") from None


def _error(r) -> str:
    try:
        return r.json().get("error", r.text)
    except Exception:
        return r.text.strip()[:200]


def create_all(items: list[tuple[str, ModelfileSpec, str]], *, host: str | None = None, console=None) -> dict:
    """Create each ``(ollama name, Modelfile spec, sha256)``; a rich progress bar over the bytes."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    creator = OllamaCreator(host)
    try:
        total = sum(spec.gguf.stat().st_size for _, spec, _ in items)
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      console=console, transient=False) as prog:
            task = prog.add_task("ollama: uploading", total=total)
            for name, spec, digest in items:
                prog.update(task, description=f"ollama: {name}")
                creator.push_blob(spec.gguf, digest, lambda n: prog.advance(task, n))
                creator.create(name, spec, digest,
                               status=lambda s, name=name: prog.update(task, description=f"ollama: {name}: {s}"))
        return {"uploaded": list(creator.uploaded), "skipped": list(creator.skipped), "host": creator.host}
    finally:
        creator.close()
