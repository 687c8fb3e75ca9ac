"""Errors a user can cause. The CLI prints them as one clear message and exits with code 2."""

from __future__ import annotations


class ShootoutError(Exception):
    """A problem the user can fix: says what is wrong and what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(ShootoutError):
    """One or more problems in a config file, each naming the field path."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {count}:\n{body}")


class DiskFull(ShootoutError):
    """The disk is full (or too full to start): nothing half-written; what was stored is kept."""

    def __init__(self, path, message: str, hint: str | None = None):
        super().__init__(message, hint or f"free some space on the disk holding {path}, then run the command again")
        self.path = path
