# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""The `unimedvl` command line.

    unimedvl chat --image scan.dcm "Which organ is shown?"
    unimedvl convert General-Medical-AI/UniMedVL ./UniMedVL-hf

Every subcommand is one module of `unimedvl.commands` named in `COMMANDS`; see that package for the contract. Errors
caused by the user's input (bad values, unreadable or missing files) are printed as `error: <message>` and exit with
status 2; `--debug` shows the traceback instead.
"""

import argparse
import sys
from importlib import import_module

from . import __version__


COMMANDS = ("chat", "convert", "generate", "edit", "train", "eval", "demo", "card", "push")
USAGE_ERROR_STATUS = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unimedvl", description="UniMedVL: medical image understanding and generation with Hugging Face."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        command_parser = import_module(f"{__package__}.commands.{name}").add_parser(subparsers)
        # SUPPRESS: `unimedvl --debug chat ...` is not reset by the subcommand's own default.
        command_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `unimedvl` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:  # bad input or files: a message, not a traceback
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
