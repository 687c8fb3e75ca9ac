"""Where the root value of a JSON document ends, followed byte by byte as a grammar accepts a reply's
tokens (engine.grammar keeps the tokens allowed after that end: the grammar's state there no longer
depends on the reply)."""

from __future__ import annotations

_END_SUFFIX = 8  # bytes after the root value's end kept as a key of the allowed tokens (more: no key)


class JsonEnd:
    """Where the root value of a JSON document ends, read byte by byte as the grammar accepts them:
    strings (with their escapes) skipped, objects and arrays counted. ``after`` is None until the
    root object or array has closed, then the bytes accepted since (None again past ``_END_SUFFIX``:
    no state is keyed by them). Roots that are not objects or arrays never close here."""

    __slots__ = ("depth", "in_str", "esc", "after")

    def __init__(self) -> None:
        self.depth, self.in_str, self.esc, self.after = 0, False, False, None

    def feed(self, piece: bytes) -> None:
        for i, b in enumerate(piece):
            if self.after is not None:
                self.after += piece[i:]
                if len(self.after) > _END_SUFFIX:
                    self.depth = -1  # too long a suffix to key: stop following
                    self.after = None
                return
            if self.depth < 0:
                return
            if self.in_str:
                if self.esc:
                    self.esc = False
                elif b == 0x5C:  # backslash
                    self.esc = True
                elif b == 0x22:  # quote
                    self.in_str = False
            elif b == 0x22:
                self.in_str = True
            elif b in (0x7B, 0x5B):  # { [
                self.depth += 1
            elif b in (0x7D, 0x5D):  # } ]
                self.depth -= 1
                if self.depth == 0:
                    self.after = b""
