"""`cityseg <command>`: parse the arguments, call one function, turn user errors into exit code 2.

Each command lives in a module of this package that defines ``add_parser(subparsers)`` (register
the sub-command and its options with ``set_defaults(run=...)``) and keeps heavy imports (torch)
inside the function it runs, so that ``cityseg --help`` starts in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from cityseg import __version__
from cityseg.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityseg",
        description="Train, evaluate and run U-Net models for Cityscapes street-scene segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"cityseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_commands(__path__, __name__, subparsers)
    return parser


def register_commands(package_path, package_name: str, subparsers) -> None:
    """Call ``add_parser(subparsers)`` of every public module or sub-package of a package."""
    for module_info in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
        if not module_info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module_info.name}").add_parser(subparsers)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        result = args.run(args)
    except UserError as error:
        for problem in error.problems:
            print(f"cityseg {args.command}: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cityseg {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
