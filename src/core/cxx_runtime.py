"""Does the installed llama.cpp carry an exported copy of the C++ runtime?

A shared library linked with a static libstdc++ and no symbol hiding exports that copy: thousands of
``std::`` symbols (iostreams, locale facets, their ``GNU_UNIQUE`` ids) and no ``libstdc++.so.6`` in its
NEEDED entries. Seen on a CUDA box whose toolchain links the C++ runtime statically: libllama.so,
libggml-base.so and libggml-cuda.so each held one. Alone in a process it works; once pandas, pyarrow
or numpy has loaded the system's libstdc++.so.6, llama.cpp's libraries no longer find their own copy
first, the dynamic loader binds some of their C++ calls to one runtime and some to another, and a
model load dies in an iostream call (segmentation fault, or ``free(): invalid pointer``). The builds
of ``make`` hide those symbols (``core.accel.HIDE_STATIC_LIBS``); this module recognises an engine
built without that, for ``shootout doctor`` and for the engine's load, which refuses it with the
command that rebuilds it instead of crashing.

ELF files are read with pyelftools (the dynamic section and the dynamic symbol table only).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

# libstdc++ internals that a library defines only when it carries the runtime itself (the shared
# libstdc++.so.6 defines them for everyone else): the locale machinery and the iostream initialiser
RUNTIME_MARKERS = ("_ZNKSt6locale2id5_M_idEv", "_ZNSt6locale2id5_M_idEv", "_ZNSt8ios_base4InitC1Ev",
                   "_ZNSt6localeC1Ev")


@dataclass(frozen=True)
class Finding:
    library: Path
    exported: int          # C++ standard-library symbols the library defines and exports
    markers: tuple[str, ...]  # which runtime internals among them
    needs_shared_runtime: bool

    @property
    def carries_runtime(self) -> bool:
        return bool(self.markers) and not self.needs_shared_runtime


def engine_library_dir() -> Path | None:
    """The folder llama-cpp-python loads its libraries from (LLAMA_CPP_LIB_PATH, else its lib/),
    found without loading them."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


@functools.lru_cache(maxsize=64)
def _inspect(path: str, size: int, mtime: float) -> Finding:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        needs = any(isinstance(s, DynamicSection) and any(
            t.entry.d_tag == "DT_NEEDED" and t.needed.startswith("libstdc++") for t in s.iter_tags())
            for s in elf.iter_sections())
        if needs:  # it uses the shared runtime (the usual case): no symbol table to read
            return Finding(Path(path), 0, (), True)
        dynsym = elf.get_section_by_name(".dynsym")
        exported, markers = 0, []
        for sym in dynsym.iter_symbols() if dynsym is not None else ():
            if sym["st_shndx"] == "SHN_UNDEF" or sym["st_other"]["visibility"] != "STV_DEFAULT":
                continue
            if sym.name.startswith(("_ZNSt", "_ZSt", "_ZNKSt")):
                exported += 1
                if sym.name in RUNTIME_MARKERS:
                    markers.append(sym.name)
    return Finding(Path(path), exported, tuple(sorted(set(markers))), False)


def inspect(path: str | Path) -> Finding:
    """What one shared library exports of the C++ runtime (cached by path, size and mtime)."""
    st = os.stat(path)
    return _inspect(str(path), st.st_size, st.st_mtime)


def engine_findings(lib_dir: Path | None = None) -> list[Finding]:
    """Every llama.cpp / ggml library of the engine that carries an exported C++ runtime."""
    lib_dir = lib_dir or engine_library_dir()
    if lib_dir is None or not lib_dir.is_dir():
        return []
    out = []
    for p in sorted(lib_dir.iterdir()):
        if p.is_file() and not p.is_symlink() and p.name.startswith(("libllama", "libggml")) and ".so" in p.name:
            try:
                finding = inspect(p)
            except Exception:  # not an ELF file we can read (another platform): nothing to say
                continue
            if finding.carries_runtime:
                out.append(finding)
    return out


def problem(lib_dir: Path | None = None) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when the engine carries an exported C++ runtime, else None."""
    found = engine_findings(lib_dir)
    if not found:
        return None
    names = ", ".join(f"{f.library.name} ({f.exported} std:: symbols)" for f in found)
    return (f"the installed llama.cpp carries its own C++ runtime and exports it ({names}; no libstdc++.so.6 "
            "among their dependencies): its toolchain linked libstdc++ statically. A model load in a process that "
            "also uses pandas, pyarrow or numpy then crashes (segmentation fault or 'free(): invalid pointer')",
            "rebuild the engine with the project's flags, which hide those symbols: `make engine ACCEL=cuda` (or "
            "cpu/metal); for a library built by hand, add -DCMAKE_SHARED_LINKER_FLAGS_INIT=-Wl,--exclude-libs,ALL "
            "to its CMake arguments (benchmarks/build_llama_cpp.sh does)")
