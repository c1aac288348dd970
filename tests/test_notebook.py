"""CI executes notebooks/analyze_designs.ipynb on a tiny SiMPO run (tiny models, no downloads)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).parent / "dna"))
from tiny_models import tiny_checkpoints, tiny_real_sets, tiny_run  # noqa: E402

from simpo_bio.dna import commands  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analyze_designs.ipynb"


def test_analyze_designs_notebook_runs_on_a_tiny_run(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(commands, "real_sets", lambda *a, **k: tiny_real_sets())
    run = tiny_run(tmp_path / "run", tiny_checkpoints(tmp_path / "ckpt"), num_samples=16)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    params[0].source = f'RUN_DIR = "{run}"\nTOP_K = 8\nRANK_BY = "eval_reward"\nK = 3\nMAX_MOTIFS = 5\n'
    monkeypatch.setenv("SIMPO_BIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    out = run / "top8_eval_reward.fasta"
    assert out.exists() and out.read_text().count(">") == 8
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # distribution, curve, logo


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
