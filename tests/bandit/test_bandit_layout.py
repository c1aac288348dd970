"""simpo_bio.bandit is a leaf: it never imports simpo_bio.cli, its files stay short and say what they import."""

import ast
import importlib
from pathlib import Path

import pytest

import simpo_bio.bandit

FILES = sorted(Path(simpo_bio.bandit.__file__).resolve().parent.glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_cli_import_short_files_with_an_imports_line(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 500
    doc = ast.get_docstring(ast.parse(text))
    assert doc and "Imports:" in doc, path.name
    for node in ast.walk(ast.parse(text)):
        names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in getattr(node, "names", [])]
        if isinstance(node, ast.ImportFrom | ast.Import):
            assert not any(n and (n == "simpo_bio.cli" or n.startswith("simpo_bio.cli.")) for n in names), path.name
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simpo_bio"):
            assert not [a.name for a in node.names if a.name.startswith("_")], path.name


def test_top_level_cli_dispatches_to_the_package_entry_point():
    """simpo_bio.cli runs `bandit` as simpo_bio.bandit.cli_main (looked up by name)."""
    assert callable(importlib.import_module("simpo_bio.bandit").cli_main)
    with pytest.raises(SystemExit) as exc:
        simpo_bio.bandit.cli_main(["--help"])
    assert exc.value.code == 0
