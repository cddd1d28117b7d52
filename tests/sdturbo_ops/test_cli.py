"""What every CLI shares (sdturbo_ops.cli): one error line and a meaningful exit code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sdturbo_ops import cli
from tests.support.helpers import REPO, run_script


def exit_of(main, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        cli.run(main)
    return exited.value.code, capsys.readouterr().err


def test_a_cli_error_is_its_line_and_its_code(capsys):
    def main():
        raise cli.CliError("no such endpoint", 3)

    assert exit_of(main, capsys) == (3, "error: no such endpoint\n")


def test_handler_not_importable_says_how_to_make_it_so(capsys):
    """bench.py run as `python3 scripts/bench.py` on a machine without the project's install: the model
    side (handler/) is not on the path. One line naming the fix, exit 2, not a traceback from a child."""
    def main():
        raise ModuleNotFoundError("No module named 'handler'")

    code, err = exit_of(main, capsys)
    assert code == cli.EXIT_USAGE and err.count("\n") == 1
    assert "make install" in err and "PYTHONPATH" in err


def test_other_missing_modules_are_not_hidden():
    def main():
        raise ModuleNotFoundError("No module named 'boto3'")

    with pytest.raises(ModuleNotFoundError):
        cli.run(main)


def test_path_arguments_are_absolute_where_they_are_parsed(tmp_path, monkeypatch):
    """TorchServe starts each worker in the model's folder: a relative path handed on names another place
    there (`make demo` waited 300 s for state files written under the model's folder)."""
    monkeypatch.chdir(tmp_path)
    assert cli.absolute_path("build/serve-state") == tmp_path / "build" / "serve-state"
    assert cli.absolute_path("~/x") == Path.home() / "x"
    assert cli.absolute_path("/already/absolute") == Path("/already/absolute")


def test_every_path_option_of_every_cli_is_made_absolute():
    """A new CLI option declared ``type=Path`` would hand a relative path on as it was given."""
    offenders = [f"{script.name}:{number}" for script in sorted((REPO / "scripts").glob("*.py"))
                 for number, line in enumerate(script.read_text().splitlines(), 1)
                 if re.search(r"\btype=(Path|str)\b", line) and re.search(r"(dir|store|out|path|file|config)", line)]
    assert not offenders, f"path options must use type=cli.absolute_path: {offenders}"


@pytest.mark.parametrize("script", ["build_offline_model.py", "download_model.py", "build_archive.py",
                                    "wait_ready.py", "serve.py"])
def test_cli_has_help(script):
    result = run_script(script, "--help")
    assert result.returncode == 0 and "usage" in result.stdout.lower()
