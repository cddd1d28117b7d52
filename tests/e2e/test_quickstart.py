"""The README's Quickstart, run as a newcomer runs it: its commands read from README.md itself (so the two
cannot drift), in a fresh checkout, with a newcomer's environment.

"Fresh checkout": the files git tracks (and untracked ones it does not ignore), copied into a folder of
their own, with nothing built: no build/, logs/ or demo.png. Its `.venv` is the one `make test` just
installed from the same setup.cfg (`make test` and `make demo` share the `install` target), linked in so
that the test does not spend minutes installing it twice; every other step of `make demo` runs there.

"A newcomer's environment": only what a login shell has (PATH, HOME, locale...), none of the Makefile's
variables (SERVE_STATE, MODEL_STORE, OUT...), no SDTURBO_*/SDSERVE_* settings and no MAKEFLAGS from the
`make test` that runs this.

What goes around the commands, never into them: a network namespace of their own (config.properties'
fixed ports 8080-8082 must not meet another server) and a TMPDIR of their own (TorchServe's pid file,
which `make stop` reads). This is the test that runs the Makefile's defaults as shipped; the other
first-hour tests may point SERVE_LOGS/SERVE_STATE elsewhere because this one does not (tests/README.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from sdturbo_ops.processes import pid_alive
from tests.support.helpers import REPO, get, private_network

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

README = REPO / "README.md"
# What a login shell carries; everything else in this process's environment comes from the test run.
NEWCOMER_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "JAVA_HOME")
# `make demo` once waited 300 s before failing; a working one takes about 20 s after the install.
COMMAND_TIMEOUT = 240


def fenced_commands(markdown: str) -> list[str]:
    """The shell commands of a Markdown text's ```bash blocks, one per command, continuation lines joined."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


def quickstart_commands(readme: str) -> list[str]:
    """The Quickstart section's commands, but `make test` (which runs this test)."""
    section = re.search(r"^## Quickstart\n(.*?)^## ", readme, re.MULTILINE | re.DOTALL)
    assert section, "README.md has no ## Quickstart section"
    return [c for c in fenced_commands(section.group(1)) if not c.startswith("make test")]


def without_make_commands(readme: str) -> list[str]:
    """The block that starts the server without make (the first ```bash block after "Without `make`")."""
    rest = readme.split("Without `make`", 1)
    assert len(rest) == 2, "README.md no longer shows how to start the server without make"
    block = re.search(r"^```bash\n.*?^```", rest[1], re.MULTILINE | re.DOTALL)
    return fenced_commands(block.group(0))


def test_the_extraction_reads_what_the_readme_shows():
    """The commands this test runs are the README's: it fails if the README's Quickstart changes shape."""
    readme = README.read_text()
    commands = quickstart_commands(readme)
    assert commands[0].startswith("make demo") and "make serve-tiny" in commands[1]
    assert any(c.startswith("make predict") for c in commands) and commands[-1].startswith("make stop")
    assert any(c.startswith("curl") and "/predictions/sdturbo" in c and "> " in c for c in commands)
    assert any("torchserve --start" in c for c in without_make_commands(readme))
    assert without_make_commands(readme)[-1].startswith(".venv/bin/torchserve --stop"), "say how to stop it"
    assert fenced_commands("```bash\nmake a \\\n  b=1   # note\n# only a comment\n```\n") == ["make a  b=1   # note"]


def fresh_checkout(into: Path) -> Path:
    """The repository's files as a clone has them, nothing built, the installed .venv linked in."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)  # mtimes kept: make must see the install as up to date
    assert not (into / "build").exists() and not (into / "demo.png").exists()
    installed = REPO / ".venv" / ".installed"
    if not installed.exists() or installed.stat().st_mtime < (REPO / "setup.cfg").stat().st_mtime:
        pytest.fail("the .venv is older than setup.cfg: run `make install` (make test does) first")
    (into / ".venv").symlink_to(REPO / ".venv")
    return into


def newcomer_environment(tmp: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in NEWCOMER_VARIABLES if name in os.environ}
    return {**env, "TMPDIR": str(tmp)}


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path} is {image.format}, not PNG"
        return image.size


def written_files(command: str) -> list[str]:
    """The files a command says it writes: make's OUT=, invoke's --out, or a shell redirection."""
    return re.findall(r"(?:\bOUT=|--out |> )(\S+\.png)\b", command)


def server_pid(tmp: Path) -> int | None:
    try:
        pid = int((tmp / ".model_server.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def test_the_readme_quickstart_as_written_in_a_fresh_checkout(tmp_path):
    checkout = fresh_checkout(tmp_path / "checkout")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = newcomer_environment(tmp)
    readme = (checkout / "README.md").read_text()
    timings: dict[str, float] = {}
    checked: set[str] = set()  # what the README's commands were seen to do, so none is skipped unnoticed

    with private_network() as inside:
        def shell(command: str, succeeds: bool = True) -> subprocess.CompletedProcess:
            # Output to files, as a terminal takes it: `torchserve --start` leaves a server that keeps writing
            # to its launcher's output, so a pipe would never reach its end.
            out, err = (tmp_path / f"command-{len(timings)}.{name}" for name in ("out", "err"))
            started = time.monotonic()
            with open(out, "w") as stdout, open(err, "w") as stderr:
                try:
                    code = subprocess.run([*inside, "bash", "-c", command], cwd=checkout, env=env, stdout=stdout,
                                          stderr=stderr, timeout=COMMAND_TIMEOUT).returncode
                except subprocess.TimeoutExpired:
                    code = f"nothing: still running after {COMMAND_TIMEOUT}s"
            timings[command] = time.monotonic() - started
            done = subprocess.CompletedProcess(command, code, out.read_text(), err.read_text())
            assert (code == 0) == succeeds, f"`{command}` exited {code}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            return done

        try:
            for command in quickstart_commands(readme) + without_make_commands(readme):
                done = shell(command)
                for name in written_files(command):
                    assert png_size(checkout / name) == (512, 512), command
                    checked.add("an image file")
                if command.startswith("make demo"):
                    assert png_size(checkout / "demo.png") == (512, 512)
                    assert server_pid(tmp) is None, "make demo left its server running"
                    checked.add("demo")
                elif command.startswith("make serve-tiny"):
                    assert "sdturbo is ready" in done.stdout
                    assert get(inside, "http://127.0.0.1:8080/ping")[0] == 200
                    checked.add("serve-tiny")
                elif command.startswith("curl") and re.search(r"/ping\b", command):
                    assert '"Healthy"' in done.stdout, done.stdout
                    checked.add("ping")
                elif command.startswith("make stop"):
                    assert server_pid(tmp) is None
                    assert not (tmp / ".model_server.pid").exists()
                    checked.add("stop")
                elif "wait_ready.py" in command:
                    assert "sdturbo is ready" in done.stdout
                    assert get(inside, "http://127.0.0.1:8080/ping")[0] == 200
                    checked.add("without make")
                    # A default the README leaves implicit, as shipped: OUT (invoke.py's image.png).
                    shell('make predict PROMPT="a lighthouse at dawn"')
                    assert png_size(checkout / "image.png") == (512, 512)
                elif "torchserve --stop" in command:
                    assert server_pid(tmp) is None and not (tmp / ".model_server.pid").exists()
                    checked.add("stop without make")

            # MODEL_STORE as shipped: model-store/, empty in a fresh checkout, so `make serve` names the
            # commands that fill it, within seconds.
            refused = shell("make serve", succeeds=False)
            assert timings["make serve"] < 60 and "make mar" in refused.stderr, refused.stderr
        finally:
            subprocess.run([*inside, str(checkout / ".venv" / "bin" / "torchserve"), "--stop", "--foreground"],
                           cwd=checkout, env=env, capture_output=True, timeout=120)
    print("\n".join(f"{seconds:6.1f}s  {command}" for command, seconds in timings.items()))
    assert checked == {"demo", "serve-tiny", "an image file", "ping", "stop", "without make", "stop without make"}, \
        checked
    # the workers wrote their state where the waiter read it: the checkout's build/serve-state, nowhere else
    assert list((checkout / "build" / "serve-state").glob("*.json"))
    assert not list((checkout / "build" / "demo-store").rglob("serve-state")), "a relative state folder"
