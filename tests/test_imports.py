"""Layout of the package, read from the source with ``ast`` (nothing is imported).

- no import cycle among the modules of ``simpo_bio`` (imports inside functions count: they are cycles too, only
  postponed);
- no domain package (``dna``, ``control``, ``bandit``, ``diffusion``, ``weighting``) imports the command-line
  dispatcher ``simpo_bio.cli``;
- ``simpo_bio.weighting`` imports nothing of ``simpo_bio`` outside itself;
- inside ``simpo_bio.dna`` the layers import down the list data -> models -> oracles -> finetune -> evaluation ->
  design -> cli, never up; no folder holds more than 12 modules;
- loading a model or an oracle imports no evaluation, design or CLI code (checked in a fresh interpreter).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "simpo_bio"
MAX_MODULES_PER_FOLDER = 12
#: The layers of simpo_bio.dna, in the order arrows may point (a layer imports only the ones before it).
DNA_LAYERS = ("data", "models", "oracles", "finetune", "evaluation", "design", "cli")
DOMAINS = ("simpo_bio.dna", "simpo_bio.control", "simpo_bio.bandit", "simpo_bio.diffusion", "simpo_bio.weighting")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The module of ``simpo_bio`` that an imported dotted name refers to (its longest known prefix)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in MODULES:
            return candidate
    return None


def imports_of(module: str) -> set[str]:
    """The ``simpo_bio`` modules that ``module`` imports anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_the_package():
    assert "simpo_bio.dna.finetune.module" in GRAPH and "simpo_bio.weighting" in GRAPH
    assert "simpo_bio.weighting" in GRAPH["simpo_bio.dna.finetune.module"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(DOMAINS)])
def test_domain_modules_never_import_the_cli_dispatcher(module):
    assert "simpo_bio.cli" not in GRAPH[module]


def test_weighting_imports_nothing_else_of_simpo_bio():
    outside = {m: sorted(t for t in GRAPH[m] if not t.startswith("simpo_bio.weighting"))
               for m in MODULES if m.startswith("simpo_bio.weighting")}
    assert {m: t for m, t in outside.items() if t} == {}


def _dna_layer(module: str) -> int | None:
    parts = module.split(".")
    return DNA_LAYERS.index(parts[2]) if len(parts) >= 3 and parts[1] == "dna" and parts[2] in DNA_LAYERS else None


def test_dna_layers_import_only_the_layers_before_them():
    assert _dna_layer("simpo_bio.dna.models.pretrain") == 1 and _dna_layer("simpo_bio.dna.cli") == 6
    up = {m: sorted(t for t in GRAPH[m] if _dna_layer(t) is not None and _dna_layer(t) > _dna_layer(m))
          for m in MODULES if _dna_layer(m) is not None}
    assert {m: t for m, t in up.items() if t} == {}


def test_no_folder_holds_more_than_a_dozen_modules():
    sizes = {str(d.relative_to(ROOT.parent)): len([f for f in d.glob("*.py") if f.name != "__init__.py"])
             for d in {p.parent for p in MODULES.values()}}
    assert {d: n for d, n in sizes.items() if n > MAX_MODULES_PER_FOLDER} == {}


def test_loading_a_model_or_an_oracle_imports_no_evaluation_design_or_cli():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from simpo_bio.dna.models.pretrain import load_pretrained\n"
        "from simpo_bio.dna.models.policies import load_policy\n"
        "from simpo_bio.dna.oracles.oracle import load_oracle\n"
        "load_pretrained('checkpoints/dna/pretrained_dhs.ckpt'); load_policy('checkpoints/dna/pretrained_dhs.ckpt')\n"
        "load_oracle('checkpoints/dna/oracle_ft.ckpt')\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('simpo_bio.dna.evaluation', 'simpo_bio.dna.design',"
        " 'simpo_bio.dna.cli', 'simpo_bio.cli', 'simpo_bio.dna.finetune')))\n"
        "assert 'simpo_bio.dna.models.pretrain' in sys.modules\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT.parent, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
