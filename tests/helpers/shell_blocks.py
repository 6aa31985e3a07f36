"""The shell commands of a Markdown file as a reader copies them: the ```bash blocks, each line
joined with its ``\\`` continuations, comments stripped, split into words as the shell would, and
``$NAME`` expanded from the ``NAME=value`` lines above it in the same file."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

_FENCE = re.compile(r"^\s*```\s*(\w*)")
_ASSIGNMENT = re.compile(r"^([A-Za-z_]\w*)=(.*)$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
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
    stdin: str | None = None
    """The here-document it reads (``<<'EOF'`` up to ``EOF``), if any."""

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


def logical_lines(lines: list[str], first: int) -> list[tuple[int, str, str | None]]:
    """``lines`` with each ``\\`` continuation joined to its line and each here-document taken
    out as the input of its line: (line number, text, here-document or None)."""
    joined: list[tuple[int, str, str | None]] = []
    pending: tuple[int, str] | None = None
    numbered = iter(enumerate(lines, start=first))
    for number, line in numbered:
        start, text = pending if pending else (number, "")
        text += line
        if line.rstrip().endswith("\\"):
            pending = (start, text.rstrip()[:-1] + " ")
            continue
        pending, heredoc, body = None, _HEREDOC.search(text), None
        if heredoc:
            body_lines = []
            for _, body_line in numbered:
                if body_line.strip() == heredoc[2]:
                    break
                body_lines.append(body_line + "\n")
            body = "".join(body_lines)
        joined.append((start, text, body))
    if pending:
        joined.append((*pending, None))
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
        for number, line, stdin in logical_lines(lines, first):
            words = [_expand(word, variables) for word in shlex.split(line, comments=True)]
            if not words:
                continue
            assignment = _ASSIGNMENT.match(words[0])
            if len(words) == 1 and assignment:
                variables[assignment[1]] = block_variables[assignment[1]] = assignment[2]
                continue
            block_commands.append(Command(f"{name}:{number}", tuple(words), block, stdin=stdin))
        found += [replace(c, block_variables=dict(block_variables)) for c in block_commands]
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
