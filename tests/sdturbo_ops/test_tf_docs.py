"""The infra README's tables (sdturbo_ops/tf_docs.py): read from variables.tf and outputs.tf, and written
between the markers only."""

from __future__ import annotations

import pytest

from sdturbo_ops import tf_docs

VARIABLES = '''variable "region" {
  description = "Where it runs."
  type        = string
  default     = "eu-west-1"
  validation {
    condition = length(var.region) > 0
  }
}

variable "name" {
  description = "The endpoint's name."
  type        = string
}
'''
OUTPUTS = '''output "endpoint" {
  description = "The endpoint's name."
  value       = var.name
}
'''


def test_blocks_are_found_with_their_nested_braces():
    found = tf_docs.blocks(VARIABLES, "variable")
    assert [name for name, _ in found] == ["region", "name"]
    assert "validation" in found[0][1] and "endpoint" not in found[0][1]
    assert tf_docs.attribute(found[0][1], "default") == '"eu-west-1"'
    assert tf_docs.attribute(found[1][1], "default") == ""


def test_the_tables_list_every_variable_and_output(tmp_path):
    (tmp_path / "variables.tf").write_text(VARIABLES)
    (tmp_path / "outputs.tf").write_text(OUTPUTS)
    table = tf_docs.tables(tmp_path, "Inputs and outputs")
    assert '| `region` | `string` | `"eu-west-1"` | Where it runs. |' in table
    assert "| `name` | `string` | `required` | The endpoint's name. |" in table
    assert "| `endpoint` | The endpoint's name. |" in table


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        tf_docs.updated("# infra\n")
