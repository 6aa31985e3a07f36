"""The shell commands of a Markdown file as a reader copies them: the ```bash blocks, each line
joined with its ``\\`` continuations, comments stripped, split into words as the shell would, and
``$NAME`` expanded from the ``NAME=value`` lines above it in the same file."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^\s*```\s*(\w*)")
_ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)=(.*)$")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
SHELLS = ("bash", "sh", "shell")


@dataclass(frozen=True)
class Command:
    """One command line of a ``bash`` block."""

    source: str
    """Where it starts: ``README.md:123``."""
    words: tuple[str, ...]
    """The shell words, ``$NAME`` already expanded."""
    block: int
    """Which ``bash`` block of its file holds it (0 for the first)."""
    block_variables: dict[str, str] = field(default_factory=dict, compare=False)
    """The ``NAME=value`` lines of its block (the values expanded)."""

    @property
    def text(self) -> str:
        """The command as one shell line (comments and continuations gone)."""
        return shlex.join(self.words)


def bash_blocks(markdown: str) -> list[tuple[int, list[str]]]:
    """The ```bash fenced blocks of ``markdown``: (line number of the first line, its lines)."""
    blocks: list[tuple[int, list[str]]] = []
    language: str | None = None  # of the fenced block the line is in
    for number, line in enumerate(markdown.splitlines(), start=1):
        fence = _FENCE.match(line)
        if fence and language is None:
            language = fence[1]
            if language in SHELLS:
                blocks.append((number + 1, []))
        elif fence and not fence[1]:
            language = None
        elif language in SHELLS:
            blocks[-1][1].append(line)
    return blocks


def logical_lines(lines: list[str], first: int) -> list[tuple[int, str]]:
    """``lines`` with each ``\\`` continuation joined to its line: (line number, text)."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in enumerate(lines, start=first):
        start, text = pending if pending else (number, "")
        text += line
        if line.rstrip().endswith("\\"):
            pending = (start, text.rstrip()[:-1] + " ")
        else:
            pending = None
            joined.append((start, text))
    if pending:
        joined.append(pending)
    return joined


def _expand(word: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: variables.get(m[1] or m[2], m[0]), word)


def commands_in(path: Path, name: str | None = None) -> list[Command]:
    """Every command of the ``bash`` blocks of the Markdown file ``path``, in order.

    A line that only sets a variable (``DATA=../shared/data/pairs``) is no command: it defines
    ``$DATA`` for the lines after it in the file and is listed in its block's ``block_variables``.
    """
    name = name or path.name
    variables: dict[str, str] = {}
    found: list[Command] = []
    for block, (first, lines) in enumerate(bash_blocks(path.read_text(encoding="utf-8"))):
        block_variables: dict[str, str] = {}
        block_commands: list[Command] = []
        for number, line in logical_lines(lines, first):
            words = [_expand(word, variables) for word in shlex.split(line, comments=True)]
            if not words:
                continue
            assignment = _ASSIGNMENT.match(words[0])
            if len(words) == 1 and assignment:
                variables[assignment[1]] = block_variables[assignment[1]] = assignment[2]
                continue
            block_commands.append(Command(f"{name}:{number}", tuple(words), block))
        found += [
            Command(c.source, c.words, c.block, dict(block_variables)) for c in block_commands
        ]
    return found


def with_optional_parts(words: tuple[str, ...]) -> list[str]:
    """``words`` with the optional parts the documentation brackets taken in: ``[--report]``
    becomes ``--report`` and ``[--mode slide]`` ``--mode slide``. A bracket inside a word
    (``data.size=[32,64]``) is a value, kept as it is."""
    taken: list[str] = []
    inside = False
    for word in words:
        if not inside and word.startswith("[") and len(word) > 1:
            inside, word = True, word[1:]
        if inside and word.endswith("]"):
            inside, word = False, word[:-1]
        taken.append(word)
    return taken
