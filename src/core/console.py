"""The terminal: text printed as it is.

Messages quote URLs, server errors, file names, run ids and model output, any of which may
contain ``[/x]`` or ``:smile:``. A console from :func:`make_console` never reads markup or emoji
codes in a string, so such text is printed exactly and can never raise rich's MarkupError.
Styling is structural instead: build a :class:`rich.text.Text` (``styled``, ``warning``), whose
spans are styles and whose text is never parsed.
"""

from __future__ import annotations

from typing import Any


def make_console(*, stderr: bool = True, width: int | None = None, **kw: Any):
    """A rich Console that prints every string literally (no markup, no emoji codes)."""
    from rich.console import Console

    return Console(stderr=stderr, width=width, markup=False, emoji=False, **kw)


def styled(*parts: str | tuple[str, str]):
    """Text from plain strings and (text, style) pairs, e.g. ``styled(("stopped.", "yellow"), " ", msg)``."""
    from rich.text import Text

    return Text.assemble(*parts)


def warning(message: str):
    """``warning: <message>``, the label in yellow, the message as it is."""
    return styled(("warning:", "yellow"), " ", message)
