"""`cityseg <command>`: parse the arguments, call one function, turn user errors into exit code 2.

Each command lives in a module of this package that defines ``add_parser(subparsers)`` (register
the sub-command and its options with ``set_defaults(run=...)``) and keeps heavy imports (torch)
inside the function it runs, so that ``cityseg --help`` starts in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import tempfile
import traceback

from cityseg import __version__, environment, faults, limits, processes
from cityseg.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityseg",
        description="Train, evaluate and run U-Net models for Cityscapes street scenes.",
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


# Commands whose speed depends on the allocator (they run the network on the CPU).
HEAVY_COMMANDS = {"train", "evaluate", "predict", "demo", "export"}


def main(argv: list[str] | None = None) -> int:
    """Run one command. Called with ``argv=None`` from the console script or ``python -m``."""
    parser = build_parser()
    args = parse_arguments(parser, argv)
    if argv is None and args.command in HEAVY_COMMANDS:
        from cityseg.runtime.allocator import prepare_allocator

        try:
            prepare_allocator(sys.argv[1:])
        except UserError as error:
            print(f"cityseg {args.command}: error: {error.problems[0]}", file=sys.stderr)
            return 2
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    command = " ".join(filter(None, ["cityseg", args.command, getattr(args, "data_command", None)]))
    try:
        result = run_command(args)
    except UserError as error:
        status = getattr(error, "exit_status", 2)  # 130/143: stopped on a signal, after saving
        for problem in error.problems:
            print(f"{command}: {'error: ' if status == 2 else ''}{problem}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` or a closed pager
        sys.stderr.close()
        return 0
    except Exception as error:
        if type(error).__name__ == "OutOfMemoryError":  # torch's, not imported here
            print(f"{command}: error: {out_of_memory_advice(error)}", file=sys.stderr)
            return 2
        if environment.text(TRACEBACK_VARIABLE) not in (None, "0"):
            raise
        print(f"{command}: {unexpected_error_line(error)}", file=sys.stderr)
        return 1
    finally:  # no worker may outlive the command, or keep it from ending
        processes.stop_children()
    return int(result or 0)


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; ``section.key=value`` overrides may stand anywhere, before and
    after the options (``train --config C a.b=1 --out R c.d=2``), and keep their order."""
    args, extras = parser.parse_known_args(argv)
    overrides = getattr(args, "overrides", None)
    if extras and isinstance(overrides, list) and all(map(_is_override, extras)):
        args.overrides = overrides + extras
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _is_override(text: str) -> bool:
    return "=" in text and not text.startswith("-")


TRACEBACK_VARIABLE = "CITYSEG_TRACEBACK"


def run_command(args: argparse.Namespace) -> int | None:
    """The command's function; on any error, progress bars are closed first so that the error
    starts a line of its own."""
    try:
        check_environment()
        return args.run(args)
    except BaseException:
        tqdm = sys.modules.get("tqdm")
        if tqdm is not None:
            for bar in list(getattr(tqdm.tqdm, "_instances", ())):
                bar.close()
        raise


def check_environment() -> None:
    """The variables read deep inside a command (per image, in a loader's worker), checked
    before it starts: a value that cannot be used is one line at once, not one per image."""
    limits.max_pixels()
    faults.check()


def unexpected_error_line(error: BaseException) -> str:
    """One line for an error cityseg did not foresee (a bug, or a case it should have checked):
    what it was, and where its full traceback was written."""
    text = traceback.format_exception(type(error), error, error.__traceback__)
    handle, path = tempfile.mkstemp(prefix="cityseg-traceback-", suffix=".txt")
    with os.fdopen(handle, "w") as file:
        file.write("".join(text))
    # An error raised in a DataLoader worker carries the worker's traceback in its message: its
    # last line is the original error.
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    message = (lines[-1] if lines else "").removeprefix(f"{type(error).__name__}: ")[:300]
    return (
        f"internal error: {type(error).__name__}: {message} (the full traceback is in {path}; "
        f"set {TRACEBACK_VARIABLE}=1 to print it; please report it)"
    )


def out_of_memory_advice(error: Exception) -> str:
    """One line for a ``torch.OutOfMemoryError`` that reached the command line."""
    first = str(error).strip().splitlines()[0][:160] if str(error).strip() else "out of memory"
    return (
        f"out of memory ({first}); for evaluate/predict use --mode slide with a smaller --tile "
        "and --tile-batch 1, --precision bf16, or --device cpu; for training a smaller "
        "train.batch_size or data.crop, or train.precision=bf16"
    )
