"""Parts of the docs that code writes: a table between two HTML comments, made afresh from the code it
documents, so the text cannot drift from it. The tests run each with `--check`.

Each part is a ``Generated`` (sdturbo_ops/tf_docs.py: infra/README.md's Terraform tables;
sdturbo_ops/request_docs.py: README.md's request table), and its CLI is ``rewrite`` with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdturbo_ops import cli
from sdturbo_ops.paths import ROOT

EXIT_STALE = 1


@dataclass(frozen=True)
class Generated:
    """The text between ``begin`` and ``end`` in ``path`` is ``render()``'s."""

    path: Path
    begin: str
    end: str
    render: Callable[[], str]
    command: str  # the command that rewrites it, for the error that says it is stale

    def updated(self, text: str) -> str:
        """``text`` (the file's) with the part between the markers replaced by a fresh one.

        Raises:
            ValueError: the text lacks the markers.
        """
        if self.begin not in text or self.end not in text:
            raise ValueError(f"{self.path} lacks the {self.begin} / {self.end} markers")
        head, rest = text.split(self.begin, 1)
        _, tail = rest.split(self.end, 1)
        return f"{head}{self.begin}\n{self.render()}{self.end}{tail}"


def rewrite(part: Generated, argv: list[str] | None, description: str) -> int:
    """The CLI of a generated part: rewrite it in place, or with --check fail (exit 1) when it is stale."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help=f"fail if {part.path.name}'s generated part is stale")
    args = parser.parse_args(argv)
    text = part.path.read_text()
    try:
        fresh = part.updated(text)
    except ValueError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None
    if fresh == text:
        return 0
    if args.check:
        raise cli.CliError(f"{part.path.relative_to(ROOT)} is stale: run `{part.command}`", EXIT_STALE)
    part.path.write_text(fresh)
    print(f"updated {part.path}")
    return 0
