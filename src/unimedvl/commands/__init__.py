# Copyright 2026 The UniMedVL-HF contributors. Licensed under the Apache License, Version 2.0.
"""Subcommands of the `unimedvl` command line, one module each.

A command module exposes `add_parser(subparsers) -> argparse.ArgumentParser`, which adds its parser with
`subparsers.add_parser(name, ...)`, sets `func=run` on it and returns it; `run(args)` does the work. Adding a command is
one module here plus its name in `unimedvl.cli.COMMANDS`. Import what only `run` needs inside `run` (parsers of all
commands are built on every call), and raise [`CommandError`] (or any `ValueError`/`OSError`) for bad user input: the
command line prints it as `error: <message>` with exit status 2.
"""


class CommandError(ValueError):
    """Bad command-line input; the message names the option and says what was expected."""


__all__ = ["CommandError"]
