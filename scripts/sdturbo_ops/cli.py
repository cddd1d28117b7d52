"""What every CLI in scripts/ shares: one error line and a meaningful exit code, never a traceback."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

EXIT_USAGE = 2  # argparse's own code for bad usage; every CLI keeps it for usage and configuration errors


def absolute_path(value: str | os.PathLike) -> Path:
    """A path argument made absolute where it is parsed (``type=`` of every path option).

    Relative paths are read against the directory the command was run in, and only here: the servers and
    workers these CLIs start run elsewhere (TorchServe starts each worker in the model's folder), so a
    relative path handed on would name another place there.
    """
    return Path(os.path.abspath(os.path.expanduser(os.fspath(value))))


class CliError(Exception):
    """A failure the user can act on: ``message`` is printed as one ``error:`` line, ``code`` is the exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def run(main: Callable[[], int]) -> None:
    """Run a CLI's ``main`` and exit with its code; a CliError becomes its line and code, Ctrl-C 130."""
    try:
        code = main()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    except ModuleNotFoundError as exc:
        # The CLIs that load the model import handler/, which only the project's install (or PYTHONPATH)
        # puts on the path; a child process's error comes back with its message only.
        if "'handler'" not in str(exc):
            raise
        print("error: the handler package is not importable: run `make install` (the project's editable "
              "install) or set PYTHONPATH to the project root", file=sys.stderr)
        code = EXIT_USAGE
    sys.exit(code)


class Progress:
    """A line on stderr every ``interval`` seconds while something long runs (``tick`` is cheap to call)."""

    def __init__(self, what: str, interval: float = 10.0):
        self.what, self.interval = what, interval
        self.started = self.last = time.monotonic()

    def tick(self, detail: str = "") -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            print(f"{self.what}... {now - self.started:.0f}s{f' ({detail})' if detail else ''}",
                  file=sys.stderr, flush=True)


def key_values(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments (a repeatable flag such as --handler-setting) as a dict.

    Raises:
        ValueError: an argument without ``=``.
    """
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        values[key] = value
    return values
