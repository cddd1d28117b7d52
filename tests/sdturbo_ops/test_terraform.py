"""Reading the stack's Terraform outputs (sdturbo_ops/terraform.py): what the AWS CLIs show when terraform fails."""

from __future__ import annotations

from tests.support.helpers import run_script


def test_terraform_errors_are_shown_whole_and_without_colour(moto, tmp_path):
    stack = tmp_path / "infra"
    stack.mkdir()
    (stack / "main.tf").write_text('output "broken" {\n  value =\n}\n')
    result = run_script("invoke.py", "async", "a cat", "--from-terraform", str(stack), env=moto["env"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Error: Invalid expression" in result.stderr  # the head of terraform's diagnostic ...
    assert "Expected the start of an expression" in result.stderr  # ... and its end
    assert "\x1b[" not in result.stderr
