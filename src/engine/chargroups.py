"""The first-character groups of a vocabulary, for the grammar's prefilter: every token grouped by the
first character llama.cpp's grammar decodes from its piece (UTF-8 read as llama.cpp's decode_utf8
reads it), with one single-character probe token per large group; the largest groups split by the
first two characters, with a two-character probe each.

Building them takes about a second for Gemma's 262,144 tokens on one core. They are kept in this
process and on disk (``<cache>/char-groups/<digest>.npz``), keyed by a digest of what llama.cpp
builds the pieces from: the GGUF's tokenizer metadata, the vocabulary size and the llama-cpp-python
version. The rungs of a ladder share one entry, and so do later runs (benchmarks/char_groups.py
measures it). A damaged or foreign cache file is never used: it is rebuilt and replaced."""

from __future__ import annotations

import ctypes
from pathlib import Path

_UTF8_LEN = (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4)  # by the lead byte's high 4 bits, as llama.cpp reads


def first_char(piece: bytes) -> tuple[int | None, int]:
    """(code point, bytes) of the first character llama.cpp's grammar decodes from ``piece`` (with no
    unfinished character before it), or (None, 0) when the piece starts with a byte that cannot lead
    a character or ends inside it."""
    size = _UTF8_LEN[piece[0] >> 4]
    if size == 0 or len(piece) < size:
        return None, 0
    value = piece[0] & ((1 << (8 - size)) - 1) if size > 1 else piece[0]
    for b in piece[1:size]:
        if b == 0:
            return None, 0
        value = (value << 6) + (b & 0x3F)
    return value, size


def utf8_unfinished(tail: bytes) -> bool:
    """Whether the bytes accepted so far end inside a character (the grammar is then mid-character)."""
    for i in range(1, min(4, len(tail)) + 1):
        b = tail[-i]
        if b >> 6 == 2:  # a continuation byte: look further back for the lead
            continue
        return _UTF8_LEN[b >> 4] > i
    return bool(tail)  # only continuation bytes: treat as unfinished


CHAR_GROUPS_FORMAT = 2  # 2: large groups split by their first two characters
SPLIT_GROUP = 1024  # a group of at least these many tokens is split by the second character
_CHAR_GROUPS: dict[str, tuple] = {}
_VOCAB_DIGESTS: dict[tuple, str | None] = {}  # (path, size, mtime, what builds the groups) -> digest


def vocab_digest(path: Path, n_vocab: int) -> str | None:
    """The digest of a GGUF's vocabulary as llama.cpp reads it (None when its header cannot be read
    here: the groups are then built and kept for this file in this process only)."""
    import hashlib

    import numpy as np

    from formats import gguf_meta

    import llama_cpp

    st = path.stat()
    built_by = f"char-groups {CHAR_GROUPS_FORMAT} llama-cpp-python {llama_cpp.__version__} n_vocab {n_vocab}"
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, built_by)
    if memo in _VOCAB_DIGESTS:
        return _VOCAB_DIGESTS[memo]
    # reading the header takes a few tenths of a second for a 262k vocabulary: the digest of this very
    # file (path, size, modification time) is kept on disk too
    seen = groups_file(hashlib.sha256(repr(memo).encode()).hexdigest(), "file")
    try:
        digest = seen.read_text().strip()
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            _VOCAB_DIGESTS[memo] = digest
            return digest
    except OSError:
        pass
    try:
        meta = gguf_meta.read(path, check_complete=False).metadata
    except (gguf_meta.GGUFError, OSError):
        digest = None
    else:
        h = hashlib.sha256(built_by.encode())
        for key in sorted(k for k in meta if k.startswith("tokenizer.") and "chat_template" not in k):
            value = meta[key]
            h.update(b"\0" + key.encode() + b"\0")
            if isinstance(value, list) and value and isinstance(value[0], str):
                h.update(np.fromiter(map(len, value), dtype=np.int64, count=len(value)).tobytes())
                h.update("".join(value).encode("utf-8", errors="surrogatepass"))
            elif isinstance(value, list):
                h.update(np.asarray(value, dtype=np.float64).tobytes())
            else:
                h.update(repr(value).encode())
        digest = h.hexdigest()
        write_atomic(seen, digest.encode())
    _VOCAB_DIGESTS[memo] = digest
    return digest


def groups_file(digest: str, kind: str = "npz") -> Path:
    from core.embedded import cache_dir

    return cache_dir() / "char-groups" / f"{digest}.{kind}"


def read_groups(digest: str, n_vocab: int):
    """(group, probes) from the disk cache, or None when absent or not what a build gives (a damaged
    or foreign file is never used: it is rebuilt and replaced)."""
    import numpy as np

    try:
        with np.load(groups_file(digest), allow_pickle=False) as z:
            group, probes = z["group"], z["probes"]
    except Exception:  # noqa: BLE001 - absent, truncated, not an npz: build instead
        return None
    if (group.dtype != np.int32 or group.shape != (n_vocab,) or probes.dtype != np.int32 or probes.ndim != 1
            or (n_vocab and not 0 <= group.min() <= group.max() <= len(probes))
            or (len(probes) and not 0 <= probes.min() <= probes.max() < n_vocab)):
        return None
    group.setflags(write=False)
    probes.setflags(write=False)
    return group, probes


def write_groups(digest: str, groups) -> None:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, group=groups[0], probes=groups[1])
    write_atomic(groups_file(digest), buf.getvalue())


def write_atomic(dest: Path, data: bytes) -> None:
    """Write a cache file whole, then rename it (parallel processes never see half a file); a cache
    folder that cannot be written only costs the next process the work again."""
    import os
    import tempfile

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except OSError:
        pass


def groups_for(path: Path, n_vocab: int, build):
    """(group of each token, probe token of each group) of the GGUF at ``path``: from this process's
    memo, else from the disk cache, else ``build()`` (then kept in both)."""
    digest = vocab_digest(path, n_vocab)
    key = digest or f"file:{path.resolve()}:{path.stat().st_mtime_ns}"
    if key not in _CHAR_GROUPS:  # another rung of the ladder, another arm: the same vocabulary
        groups = read_groups(digest, n_vocab) if digest else None
        if groups is None:
            groups = build()
            if digest:
                write_groups(digest, groups)
        _CHAR_GROUPS[key] = groups
        while len(_CHAR_GROUPS) > 4:
            _CHAR_GROUPS.pop(next(iter(_CHAR_GROUPS)))
    return _CHAR_GROUPS[key]


def build_groups(L, vocab, n_vocab: int):
    """(group of each token, probe token of each group) read from a loaded vocabulary. A group is the
    tokens whose piece starts with one character, probed with the token that is that character alone;
    the tokens of a large group are split further by their first two characters, where a token is
    those two alone (a grammar that rejects the two rejects every piece starting with them: after a
    space, say, a grammar that allows only a digit rejects " the", " a" and the rest of the tens of
    thousands of tokens that start with a space). Group 0 holds the tokens always checked: end of
    generation, pieces that do not start with a whole character, and small or probe-less groups."""
    import numpy as np

    buf = ctypes.create_string_buffer(256)
    first = np.full(n_vocab, -1, dtype=np.int64)
    second = np.full(n_vocab, -1, dtype=np.int64)
    exact: dict[int, int] = {}
    exact2: dict[tuple[int, int], int] = {}
    for t in range(n_vocab):
        if L.llama_vocab_is_eog(vocab, t):
            continue
        n = L.llama_token_to_piece(vocab, t, buf, 256, 0, True)
        if n <= 0:
            continue
        piece = buf.raw[:n]
        cp, size = first_char(piece)
        if cp is None:
            continue
        first[t] = cp
        if size == n:
            exact.setdefault(cp, t)
            continue
        cp2, size2 = first_char(piece[size:])
        if cp2 is not None:
            second[t] = cp2
            if size + size2 == n:
                exact2.setdefault((cp, cp2), t)
    cps, inverse, counts = np.unique(first, return_inverse=True, return_counts=True)
    group_of_cp = np.zeros(len(cps), dtype=np.int32)
    probes = []
    for i, (cp, count) in enumerate(zip(cps.tolist(), counts.tolist())):
        if cp >= 0 and count >= 4 and cp in exact:
            probes.append(exact[cp])
            group_of_cp[i] = len(probes)
    group = group_of_cp[inverse.reshape(-1)]
    for i, (cp, count) in enumerate(zip(cps.tolist(), counts.tolist())):
        if cp < 0 or count < SPLIT_GROUP:
            continue
        members = np.flatnonzero(first == cp)
        pairs, inv2, counts2 = np.unique(second[members], return_inverse=True, return_counts=True)
        sub = np.full(len(pairs), -1, dtype=np.int64)  # pair -> its group (-1: stays in the first's)
        for j, (cp2, count2) in enumerate(zip(pairs.tolist(), counts2.tolist())):
            probe = exact2.get((cp, cp2))
            if cp2 >= 0 and count2 >= 4 and probe is not None:
                probes.append(probe)
                sub[j] = len(probes)
        new = sub[inv2.reshape(-1)]
        group[members[new >= 0]] = new[new >= 0]
    group.setflags(write=False)
    probes = np.array(probes, dtype=np.int32)
    probes.setflags(write=False)
    return group, probes
