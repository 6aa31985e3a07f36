"""`cityseg data <check|download|generate|prepare>`: one module per sub-command in this package."""

from __future__ import annotations

from cityseg.cli import register_commands


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="download, inspect, generate or cache datasets")
    data_commands = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    parser.set_defaults(run=lambda args: parser.print_help())
    register_commands(__path__, __name__, data_commands)
