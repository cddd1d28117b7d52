"""Parts of the docs that code writes (sdturbo_ops/generated_docs.py): only the text between the markers
changes, and --check fails on a stale part without writing."""

from __future__ import annotations

import pytest

from sdturbo_ops import cli
from sdturbo_ops.generated_docs import EXIT_STALE, Generated, rewrite
from sdturbo_ops.paths import ROOT


def part(path, table="| a |\n"):
    return Generated(path, "<!-- BEGIN T -->", "<!-- END T -->", lambda: table, "make-the-table")


def test_only_the_text_between_the_markers_is_replaced():
    text = "# Title\n<!-- BEGIN T -->\n| old |\n<!-- END T -->\nafter\n"
    assert part(ROOT / "x.md").updated(text) == "# Title\n<!-- BEGIN T -->\n| a |\n<!-- END T -->\nafter\n"


def test_a_file_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        part(ROOT / "x.md").updated("# Title\n")


def test_check_fails_on_a_stale_part_and_a_rewrite_makes_it_fresh(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sdturbo_ops.generated_docs.ROOT", tmp_path)
    doc = tmp_path / "doc.md"
    stale = "<!-- BEGIN T -->\n| old |\n<!-- END T -->\n"
    doc.write_text(stale)
    with pytest.raises(cli.CliError) as caught:
        rewrite(part(doc), ["--check"], "doc")
    assert caught.value.code == EXIT_STALE and "make-the-table" in str(caught.value)
    assert doc.read_text() == stale
    assert rewrite(part(doc), [], "doc") == 0 and "updated" in capsys.readouterr().out
    assert rewrite(part(doc), ["--check"], "doc") == 0
    assert doc.read_text() == "<!-- BEGIN T -->\n| a |\n<!-- END T -->\n"
