"""The first-deploy runbook and its teardown in infra/README.md, read as the commands a reader types.

Each ```bash block of a step becomes simple commands: continuation lines joined, comments dropped,
pipelines and lists (``|``, ``&&``, ``;``) split, redirections and heredocs taken apart, and every
``$(...)`` parsed as a command of its own. tests/e2e/test_runbook.py checks them against the code and
tests/e2e/test_infra_emulator.py runs some of them, so neither holds a copy that could drift from the page.
The page keeps to what this reader understands (no loops, no unquoted ``$(...)``); it fails loudly on
anything else rather than guess.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.helpers import REPO

README = REPO / "infra" / "README.md"
FIRST_DEPLOY = "First deploy, step by step"
TEARDOWN = "Teardown: back to nothing billable"
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
OPERATORS = {"|", "||", "&&", ";", "&"}
REDIRECTS = {">", ">>", "<"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    """One simple command of the runbook."""

    argv: tuple[str, ...]  # words after quote removal; a ``$(...)`` stays inside its word
    step: str  # heading of the step, e.g. "3. First apply, before any image"
    assignments: tuple[tuple[str, str], ...] = ()  # NAME=value words before the command (or after export)
    stdin: str = ""  # a heredoc's body
    writes: tuple[str, ...] = ()  # files it redirects its output to
    nested: bool = False  # it runs inside another command's ``$(...)``

    @property
    def program(self) -> str:
        return self.argv[0] if self.argv else ""

    def flag(self, name: str) -> str | None:
        """The value of ``name VALUE`` or ``name=VALUE``; None when absent."""
        for index, word in enumerate(self.argv):
            if word == name and index + 1 < len(self.argv):
                return self.argv[index + 1]
            if word.startswith(name + "="):
                return word[len(name) + 1:]
        return None

    def values(self, name: str) -> list[str]:
        """Every value of a repeatable flag (``-target=...``, ``--build-arg ...``)."""
        found = []
        for index, word in enumerate(self.argv):
            if word == name and index + 1 < len(self.argv):
                found.append(self.argv[index + 1])
            elif word.startswith(name + "="):
                found.append(word[len(name) + 1:])
        return found


@dataclass
class Step:
    title: str
    text: str
    commands: list[Command] = field(default_factory=list)


def substitutions(text: str) -> list[str]:
    """The bodies of the ``$(...)`` in ``text`` (outermost only), by balancing parentheses."""
    found, index = [], 0
    while (start := text.find("$(", index)) >= 0:
        depth, end = 1, start + 2
        while depth and end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        if depth:
            raise ValueError(f"unbalanced $( in {text!r}")
        found.append(text[start + 2:end - 1])
        index = end
    return found


def _words(line: str) -> list[str]:
    """Shell words; each ``$(...)`` is set aside first, since quotes inside it start afresh."""
    held = []

    def hold(text: str) -> str:
        for inner in substitutions(text):
            held.append(f"$({inner})")
            text = text.replace(held[-1], f"@SUBSTITUTION{len(held) - 1}@", 1)
        return text

    lexer = shlex.shlex(hold(line), posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return [re.sub(r"@SUBSTITUTION(\d+)@", lambda m: held[int(m.group(1))], word) for word in lexer]


def parse(script: str, step: str, nested: bool = False) -> list[Command]:
    """The simple commands of a bash snippet, in order, each followed by the commands of its ``$(...)``."""
    lines, commands, index = script.splitlines(), [], 0
    while index < len(lines):
        line = lines[index]
        index += 1
        while line.endswith("\\") and index < len(lines):
            line = line[:-1] + " " + lines[index]
            index += 1
        body, expands = "", False
        heredoc = HEREDOC.search(line)
        if heredoc:
            quoted, delimiter = heredoc.group(1), heredoc.group(2)
            end = lines.index(delimiter, index) if delimiter in lines[index:] else -1
            if end < 0:
                raise ValueError(f"{step}: heredoc {delimiter} is never closed")
            body, expands = "\n".join(lines[index:end]) + "\n", not quoted
            line = line[:heredoc.start()] + line[heredoc.end():]
            index = end + 1
        for simple in _split(_words(line)):
            command = _command(simple, step, nested, body)
            if command.argv or command.assignments:
                commands.append(command)
            for word in list(command.argv) + [value for _, value in command.assignments]:
                for inner in substitutions(word):
                    commands += parse(inner, step, nested=True)
            if expands:
                for inner in substitutions(body):
                    commands += parse(inner, step, nested=True)
    return commands


def _split(words: list[str]) -> list[list[str]]:
    groups, current = [], []
    for word in words:
        if word in OPERATORS:
            groups.append(current)
            current = []
        else:
            current.append(word)
    return [group for group in groups + [current] if group]


def _command(words: list[str], step: str, nested: bool, stdin: str) -> Command:
    argv, writes, assignments, index = [], [], [], 0
    if words and words[0] == "export":
        words = words[1:]
    while index < len(words):
        word = words[index]
        if word in REDIRECTS:
            if index + 1 >= len(words):
                raise ValueError(f"{step}: redirection without a target in {words}")
            if word != "<":
                writes.append(words[index + 1])
            index += 2
            continue
        if not argv and ASSIGNMENT.match(word):
            name, value = word.split("=", 1)
            assignments.append((name, value))
        else:
            argv.append(word)
        index += 1
    return Command(tuple(argv), step, tuple(assignments), stdin, tuple(writes), nested)


def part(title: str, text: str | None = None) -> str:
    """The text of one ``## title`` section."""
    text = README.read_text() if text is None else text
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    if not match:
        raise ValueError(f"infra/README.md has no section '## {title}'")
    return match.group(1)


def steps(title: str, text: str | None = None) -> list[Step]:
    """The ``###`` steps of one section, each with the commands of its bash blocks."""
    found = []
    for match in re.finditer(r"^### ([^\n]+)\n(.*?)(?=^### |\Z)", part(title, text), re.MULTILINE | re.DOTALL):
        step = Step(match.group(1).strip(), match.group(2))
        for block in re.findall(r"^```bash\n(.*?)^```", step.text, re.MULTILINE | re.DOTALL):
            step.commands += parse(block, step.title)
        found.append(step)
    return found


def step(title_start: str, section: str = FIRST_DEPLOY) -> Step:
    """The step whose heading starts with ``title_start`` (e.g. "3.")."""
    matching = [s for s in steps(section) if s.title.startswith(title_start)]
    if len(matching) != 1:
        raise ValueError(f"infra/README.md: {len(matching)} steps of '{section}' start with {title_start!r}")
    return matching[0]


def all_commands() -> list[Command]:
    return [command for title in (FIRST_DEPLOY, TEARDOWN) for s in steps(title) for command in s.commands]


def script_call(command: Command) -> tuple[Path, list[str]] | None:
    """(script, arguments) of ``.venv/bin/python scripts/X.py ...`` or ``scripts/X.py ...``; None otherwise."""
    argv = list(command.argv)
    if argv and (argv[0].endswith("/python") or argv[0] in ("python", "python3")):
        argv = argv[1:]
    if argv and argv[0].startswith("scripts/") and argv[0].endswith(".py"):
        return REPO / argv[0], argv[1:]
    return None


def terraform_root(command: Command) -> Path:
    """The folder a ``terraform -chdir=DIR ...`` command runs in."""
    chdir = command.flag("-chdir")
    return REPO / chdir if chdir else REPO


def terraform_args(command: Command) -> list[str]:
    """The arguments after ``terraform -chdir=DIR``: what the emulator test runs in its copy of DIR."""
    return [word for word in command.argv[1:] if not word.startswith("-chdir=")]


def raw_output(word: str) -> str:
    """X, for a word that is ``$(terraform ... output -raw X)``."""
    return terraform_output(word)[1]


def success_lines(step: Step) -> list[str]:
    """The Terraform summaries a step promises, e.g. ``Apply complete! Resources: 14 added, ...``."""
    return re.findall(r"`((?:Apply|Destroy) complete! Resources: [^`]+|Plan: [^`]+)`", step.text)


def repository_variables() -> dict[str, str]:
    """NAME -> the word the runbook sets it to (``gh variable set NAME --body WORD``)."""
    return {c.argv[3]: c.flag("--body") for c in all_commands() if c.argv[:3] == ("gh", "variable", "set")}


def shell_values() -> dict[str, str]:
    """The shell variables the first deploy sets to a literal (``export AWS_REGION=us-east-1``, ...)."""
    return {name: value for s in steps(FIRST_DEPLOY) for c in s.commands for name, value in c.assignments
            if "$" not in value}


def terraform_output(word: str) -> tuple[str, str]:
    """(root, output) of a word that is ``$(terraform -chdir=ROOT output -raw OUTPUT)``."""
    (inner,) = substitutions(word)
    (command,) = parse(inner, "")
    if command.program != "terraform" or not command.flag("-raw"):
        raise ValueError(f"{word!r} is not a terraform output")
    return command.flag("-chdir"), command.flag("-raw")
