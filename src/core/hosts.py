"""Server addresses as the tools that own them read them: one place for the export stage (``ollama
create``) and the benchmark's Ollama backend."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

OLLAMA_PORT = 11434


def normalize_host(host: str | None = None) -> str:
    """OLLAMA_HOST read as the official client reads it (ollama._client._parse_host): no scheme means
    http on port 11434; a scheme without a port means its usual port."""
    host = (host or os.environ.get("OLLAMA_HOST") or "").strip() or f"127.0.0.1:{OLLAMA_PORT}"
    default_port = OLLAMA_PORT
    if "://" in host:
        default_port = {"http": 80, "https": 443}.get(host.split("://", 1)[0].lower(), OLLAMA_PORT)
    else:
        host = "http://" + host
    u = urlsplit(host)
    hostname = u.hostname or "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    path = u.path.rstrip("/")
    return f"{u.scheme}://{hostname}:{u.port or default_port}{path}"
