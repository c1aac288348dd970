"""Layout rules of simpo_bio.weighting: self-contained, no private names across files, files <= 500 lines."""

import ast
from pathlib import Path

import pytest
import torch

import simpo_bio.weighting as sw

PACKAGE = Path(sw.__file__).resolve().parent
FILES = sorted(PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_imports_stay_inside_the_package_and_are_public(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simpo_bio"):
            assert node.module.startswith("simpo_bio.weighting"), f"{path.name} imports {node.module}"
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports private names {private} from {node.module}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("simpo_bio") or alias.name.startswith("simpo_bio.weighting")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_files_are_short_and_say_what_they_import(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 500
    doc = ast.get_docstring(ast.parse(text))
    assert doc, path.name
    if path.name != "__init__.py":
        assert "Imports:" in doc, path.name


def test_check_advantage_raises_the_typed_error():
    with pytest.raises(sw.AdvantageError, match=r"reward has a non-finite value \(nan\) in group \(1\) at position 0"):
        sw.check_advantage(torch.tensor([[1.0, 2.0], [float("nan"), 1.0]]), what="reward")
    with pytest.raises(sw.AdvantageError, match=r"group \(0\) has no valid sample"):
        sw.check_advantage(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool))
    assert issubclass(sw.AdvantageError, ValueError)
    sw.check_advantage(torch.tensor([[float("inf"), 0.0]]), torch.tensor([[False, True]]))  # masked: fine
    with pytest.raises(sw.AdvantageError):
        sw.compute_weights(torch.tensor([[0.0, float("inf")]]), "linear")
    with pytest.raises(sw.AdvantageError):
        sw.group_advantages(torch.tensor([[0.0, float("nan")]]))
