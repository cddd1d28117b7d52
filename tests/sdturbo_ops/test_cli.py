"""What every CLI shares (sdturbo_ops.cli): one error line and a meaningful exit code."""

from __future__ import annotations

import pytest

from sdturbo_ops import cli
from tests.support.helpers import run_script


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


@pytest.mark.parametrize("script", ["build_offline_model.py", "download_model.py", "build_archive.py",
                                    "wait_ready.py", "serve.py"])
def test_cli_has_help(script):
    result = run_script(script, "--help")
    assert result.returncode == 0 and "usage" in result.stdout.lower()
