"""Unreadable samples as values: the one way a dataset item that cannot be read leaves a
DataLoader worker. An exception raised in a worker comes back wrapped in a traceback; a
:class:`BadSample` carries the one-line problems that name the files intact. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cityseg.errors import UserError

Item = TypeVar("Item")


@dataclass(frozen=True)
class BadSample:
    """An item that could not be read: its index and the one-line problems naming its files."""

    index: int
    problems: list[str]


def read_or_report(read: Callable[[int], Item], index: int) -> Item | BadSample:
    """``read(index)``, or a :class:`BadSample` with its problems when it raises a UserError.

    Example:
        >>> from cityseg.errors import DataError
        >>> def read(index):
        ...     raise DataError(f"{index}.png: truncated; download it again")
        >>> read_or_report(read, 3)
        BadSample(index=3, problems=['3.png: truncated; download it again'])
    """
    try:
        return read(index)
    except UserError as error:
        return BadSample(index, error.problems)
