"""notebooks/analyze_designs.ipynb runs the way a user runs it: `jupyter execute` in notebooks/ on a tiny run.

The run lives under the repository's runs/ (removed afterwards) and is named by a *relative* SIMPO_RUN_DIR, so the
notebook has to find the repository root by walking up from the kernel's working directory (notebooks/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "dna"))  # tiny_models, demo_job
from tiny_models import tiny_checkpoints, tiny_real_sets, tiny_run  # noqa: E402

from simpo_bio.dna.design import designs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "analyze_designs.ipynb"
JUPYTER = Path(sys.executable).parent / "jupyter"


@pytest.mark.skipif(not JUPYTER.exists(), reason="needs the [dev] extra (nbclient / ipykernel: `jupyter execute`)")
@pytest.mark.parametrize("method", ["simpo", "natural_policy_demo"])
def test_analyze_designs_notebook_runs_with_jupyter_execute_from_notebooks(method, tmp_path, monkeypatch):
    """On a SiMPO run and on the demo's run (the natural policy: no ESS or negative mass in its history)."""
    torch.set_num_threads(1)
    monkeypatch.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    relative = Path("runs") / f".pytest-notebook-{uuid.uuid4().hex[:8]}"
    run = ROOT / relative
    try:
        if method == "simpo":
            tiny_run(run, tiny_checkpoints(tmp_path / "ckpt"), num_samples=16)
        else:
            import demo_job

            demo_job.run(run, 2)
        env = dict(os.environ, SIMPO_RUN_DIR=str(relative), SIMPO_MAX_MOTIFS="5", OMP_NUM_THREADS="1",
                   SIMPO_BIO_CACHE=str(tmp_path / "cache"))  # fmt: skip
        proc = subprocess.run(
            [str(JUPYTER), "execute", NOTEBOOK.name, f"--output={tmp_path / 'executed'}", "--timeout=300"],
            cwd=NOTEBOOK.parent, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        nb = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.output_type == "error"]
        assert any(str(run) in o.get("text", "") for o in outputs)  # "run directory: <root>/runs/..."
        assert len([o for o in outputs if "image/png" in o.get("data", {})]) >= 3  # plots, curves, logo
        fasta = run / "top50_eval_reward.fasta"
        assert fasta.exists() and fasta.read_text().count(">") == 16
    finally:
        shutil.rmtree(run, ignore_errors=True)
