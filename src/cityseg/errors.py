"""Errors meant for the user: one line each, naming the file and the fix.

Tracebacks are for bugs.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input. The CLI prints each line on stderr and exits with status 2.

    Args:
        problems: one or more one-line messages, each naming the file concerned and what to do.
    """

    def __init__(self, *problems: str) -> None:
        # One line each, whatever text (a file's key, a path) a message quotes.
        self.problems: list[str] = [
            p.replace("\r", "\\r").replace("\n", "\\n") for p in problems if p
        ]
        super().__init__("\n".join(self.problems))


def setting(option: str, value: object) -> str:
    """A setting as the user wrote it, for messages: ``train.device=cuda`` for a configuration key
    (it holds a dot), ``--device cuda`` for a command-line option."""
    return f"{option}={value}" if "." in option else f"{option} {value}"


class DataError(UserError):
    """A dataset that cannot be used as given: missing, unpaired, unreadable or malformed files."""


class ConfigError(UserError):
    """A configuration value or override that is invalid."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded: missing, corrupt, unsafe, or incompatible."""
