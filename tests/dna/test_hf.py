"""Hugging Face export / import of the DNA generators (simpo_bio/dna/models/hf.py): tiny random models, offline, seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from tiny_models import tiny_pretrained_ckpt  # noqa: E402

from simpo_bio.dna.design import hf_export
from simpo_bio.dna.finetune.module import load_policy  # noqa: E402
from simpo_bio.dna.models import hf  # noqa: E402
from simpo_bio.dna.models.backbones import DilatedCNN  # noqa: E402
from simpo_bio.dna.models.checkpoints import CheckpointArchitectureError, CheckpointNotFoundError  # noqa: E402
from simpo_bio.dna.models.hf_modeling import modeling_simpo_dna as remote  # noqa: E402

TINY_TRANSFORMER = {"architecture": "transformer", "vocab_size": 5, "hidden_size": 16, "num_layers": 2,
                    "num_heads": 2, "intermediate_size": 32, "max_len": 32}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    ckpt = tiny_pretrained_ckpt(root / "pretrained.ckpt")
    return ckpt, hf_export.export_hf(ckpt, root / "hf_cnn")


def _tokens(batch=3, length=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (batch, length), generator=g), torch.rand(batch, generator=g)


def test_export_writes_the_files_and_the_card(exported):
    ckpt, out = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["README.md", "config.json", "model.safetensors", *hf.CODE_FILES])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "simpo_dna" and cfg["auto_map"] == hf.AUTO_MAP
    assert cfg["backbone_config"]["architecture"] == "dilated_cnn" and cfg["seq_len"] == 200
    assert cfg["simpo_bio"]["kind"] == "pretrained" and cfg["simpo_bio"]["source_checkpoint"] == str(ckpt)
    for name in hf.CODE_FILES:  # the shipped code is the package's, byte for byte, and imports no simpo_bio
        text = (out / name).read_text()
        assert text == (hf.CODE_DIR / name).read_text()
        assert "import simpo_bio" not in text and "from simpo_bio" not in text
    card = (out / "README.md").read_text()
    for needle in ("MDLM", "## Data", hf_export.DHS_SHA256, "## Sampling", f"simpo-bio sample --ckpt {out.name}",
                   "trust_remote_code=True", "No `metrics.md`"):
        assert needle in card


def test_local_registration_gives_our_logits(exported):
    from transformers import AutoConfig, AutoModelForMaskedLM

    ckpt, out = exported
    policy, _ = load_policy(ckpt)
    assert isinstance(AutoConfig.from_pretrained(out), hf.SimpoDNAConfig)
    model = AutoModelForMaskedLM.from_pretrained(out).eval()  # registered classes: no remote code
    assert type(model) is hf.SimpoDNAForMaskedLM
    assert set(model.state_dict()) == set(policy.state_dict())
    x, sigma = _tokens()
    with torch.no_grad():
        ours = policy.backbone(x, sigma)
        assert torch.equal(model(x, sigma=sigma).logits, ours)
        assert torch.equal(model(input_ids=x, t=torch.full((3,), 0.5)).logits, ours)  # no time conditioning
        assert torch.allclose(model.subs_log_probs(x, ours), policy(x, sigma))
        loss, logits = model(x, labels=x.masked_fill(x == 4, -100), return_dict=False)
    assert torch.isfinite(loss) and logits.shape == (3, 20, 5)


@pytest.mark.parametrize("order,time_conditioning", [("grouped", False), ("interleaved", True)])
def test_shipped_dilated_cnn_is_ours(order, time_conditioning):
    torch.manual_seed(0)
    ours = DilatedCNN(hidden_dim=8, num_stacks=2, dilations=(1, 2), kernel_size=3, block_order=order,
                      time_conditioning=time_conditioning).eval()
    copy = remote.DilatedCNN(**ours.config()).eval()
    assert list(copy.state_dict()) == list(ours.state_dict())
    copy.load_state_dict(ours.state_dict())
    x, sigma = _tokens()
    with torch.no_grad():
        assert torch.equal(copy(x, sigma), ours(x, sigma))
        onehot = torch.nn.functional.one_hot(x, 5).float()
        assert torch.equal(copy(onehot, sigma), ours(onehot, sigma))


def test_directory_loads_through_load_policy_and_samples_the_same(exported):
    ckpt, out = exported
    policy, _ = load_policy(ckpt)
    again, info = hf.load_hf_policy(out)
    assert info["kind"] == "pretrained" and info["seq_len"] == 200 and info["num_steps"] is None
    a = policy.sample(4, 20, num_steps=8, seed=3)
    assert torch.equal(a, again.sample(4, 20, num_steps=8, seed=3))


def test_fine_tuning_starts_from_an_exported_directory(exported):
    from tiny_models import finetuning

    ckpt, out = exported
    kw = {"oracle": lambda x: x.float().mean(-1), "seq_len": 20, "group_size": 4, "num_steps": 4}
    a, b = finetuning(pretrained=str(out), **kw), finetuning(pretrained=str(ckpt), **kw)
    assert a.hparams.pretrained == str(out)
    for name, (p, q) in {n: (p, b.policy.state_dict()[n]) for n, p in a.policy.state_dict().items()}.items():
        assert torch.equal(p, q), name
    assert a.policy.training and not a.reference.training


def test_transformer_model_round_trips(tmp_path):
    from simpo_bio.diffusion.masked import MaskedDiffusion
    from simpo_bio.dna.models.pretrain import MaskedDiffusionLM, export_state

    torch.manual_seed(0)
    transformer = {k: v for k, v in TINY_TRANSFORMER.items() if k not in ("architecture", "vocab_size")}
    lm = MaskedDiffusionLM(architecture="transformer", transformer=transformer, num_eval_samples=0)
    lm.ema.load_state_dict(lm.model.state_dict())
    torch.save(export_state(lm), tmp_path / "tf.ckpt")
    out = hf_export.export_hf(tmp_path / "tf.ckpt", tmp_path / "hf_tf")
    policy, _ = load_policy(tmp_path / "tf.ckpt")
    assert isinstance(policy, MaskedDiffusion)
    model = hf.SimpoDNAForMaskedLM.from_pretrained(out).eval()
    x, sigma = _tokens()
    with torch.no_grad():
        assert torch.equal(model(x, sigma=sigma).logits, policy.backbone(x, sigma))
    assert "transformer encoder (BERT" in (out / "README.md").read_text()


def test_finetuned_checkpoint_exports_with_the_run_metrics(tmp_path):
    from tiny_models import finetuning

    pre = tiny_pretrained_ckpt(tmp_path / "pretrained.ckpt")
    module = finetuning(pretrained=str(pre), oracle=lambda x: x.float().mean(-1), scheme="linear_neg",
                             scheme_params={"eta": 1.0}, group_size=2, num_groups=1, seq_len=20)
    with torch.no_grad():
        for p in module.policy.parameters():
            p.add_(0.01)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 7}
    module.on_save_checkpoint(ckpt)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    (run / "metrics.md").write_text("| model | Pred-Activity |\n|---|---:|\n| fine-tuned | 1.23 |\n")
    out = hf_export.export_hf(run / "checkpoints" / "last.ckpt", tmp_path / "hf_ft")
    card = (out / "README.md").read_text()
    assert "SiMPO fine-tuned" in card and "`linear_neg`" in card and "eta=1.0" in card
    assert "| fine-tuned | 1.23 |" in card
    policy, info = hf.load_hf_policy(out)
    assert info["kind"] == "finetuned" and info["scheme"] == "linear_neg" and info["seq_len"] == 20
    x, sigma = _tokens()
    with torch.no_grad():
        assert torch.equal(policy.backbone(x, sigma), module.policy.backbone(x, sigma))


def test_remote_code_in_a_fresh_interpreter(exported, tmp_path):
    """``trust_remote_code`` loads the copied files (not simpo_bio's registration) and gives our logits."""
    ckpt, out = exported
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModelForMaskedLM
        model = AutoModelForMaskedLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert not any(m.startswith("simpo_bio") for m in sys.modules), "simpo_bio was imported"
        x, sigma = torch.load({str(tmp_path / 'in.pt')!r})
        with torch.no_grad():
            torch.save(model(x, sigma=sigma).logits, {str(tmp_path / 'out.pt')!r})
            seqs = model.sample_sequences(2, seq_len=12, num_steps=4, generator=torch.Generator().manual_seed(0))
        assert seqs.shape == (2, 12) and int(seqs.max()) < 4
    """)
    x, sigma = _tokens()
    torch.save((x, sigma), tmp_path / "in.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    policy, _ = load_policy(ckpt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child (OMP_NUM_THREADS=1): the same reductions, so bit-equal logits
    try:
        with torch.no_grad():
            assert torch.equal(torch.load(tmp_path / "out.pt"), policy.backbone(x, sigma))
    finally:
        torch.set_num_threads(threads)


def test_errors_name_the_problem(tmp_path, exported):
    with pytest.raises(CheckpointNotFoundError, match="model.safetensors"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text("{}")
        hf.load_hf_policy(tmp_path / "empty")
    _, out = exported
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    (bad / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointArchitectureError, match="model_type"):
        hf.load_hf_policy(bad)
    with pytest.raises(SystemExit):
        hf_export.export_hf_main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x")])
    assert not Path(tmp_path / "x").exists()


def test_cli_exports_and_samples_and_evaluates_a_directory(tmp_path, monkeypatch, capsys):
    from tiny_models import SEQ_LEN, tiny_checkpoints, tiny_real_sets

    from simpo_bio.cli import main as cli_main
    from simpo_bio.dna.data.tables import read_fasta
    from simpo_bio.dna.design import designs

    monkeypatch.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    monkeypatch.setenv("SIMPO_BIO_CACHE", str(tmp_path / "cache"))
    ckpts = tiny_checkpoints(tmp_path / "ckpt")
    out = tmp_path / "hf"
    cli_main(["export-hf", "--ckpt", str(ckpts["pretrained"]), "--out", str(out)])
    assert "exported" in capsys.readouterr().out and (out / "model.safetensors").is_file()
    for ckpt, fasta in ((out, tmp_path / "dir.fasta"), (ckpts["pretrained"], tmp_path / "file.fasta")):
        cli_main(["sample", "--ckpt", str(ckpt), "--num-samples", "6", "--num-steps", "4", "--no-score",
                  "--out", str(fasta)])
    ids, toks, _ = read_fasta(tmp_path / "dir.fasta")
    assert len(ids) == 6 and toks.shape == (6, 200)
    assert torch.equal(toks, read_fasta(tmp_path / "file.fasta")[1])  # the directory is the same generator
    cli_main(["evaluate", "--ckpt", str(out), "--num-samples", "6", "--num-steps", "4", "--eval-oracle",
              str(ckpts["eval_oracle"]), "--pretrained", "", "--no-jaspar", "--no-novelty"])
    assert "Pred-Activity (median)" in capsys.readouterr().out
    assert SEQ_LEN == 20


def test_export_hf_full_disk_leaves_the_previous_export_whole(exported, tmp_path, monkeypatch, capsys):
    """ENOSPC while writing the weights: one line, exit 2, the previous export byte-identical, no temp folder."""
    import errno

    from simpo_bio.cli import main as cli_main

    ckpt, first = exported
    out = tmp_path / "hf"
    cli_main(["export-hf", "--ckpt", str(ckpt), "--out", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    def full(self, save_directory, **kwargs):
        (Path(save_directory) / "config.json").write_text("{}")  # the new config is written, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf_export.SimpoDNAForMaskedLM, "save_pretrained", full)
    with pytest.raises(SystemExit) as e:
        cli_main(["export-hf", "--ckpt", str(ckpt), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "no space left on the device writing" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    (out / "notes.txt").write_text("mine")
    monkeypatch.undo()
    with pytest.raises(SystemExit):
        cli_main(["export-hf", "--ckpt", str(ckpt), "--out", str(out)])
    assert "holds other files" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("damage", ["config", "weights"])
def test_a_damaged_export_directory_is_one_line(exported, tmp_path, capsys, damage):
    """A broken config.json (was a JSONDecodeError traceback) or truncated weights (a SafetensorError traceback)."""
    import shutil

    from simpo_bio.cli import main as cli_main

    _, good = exported
    out = tmp_path / "hf"
    shutil.copytree(good, out)
    if damage == "config":
        (out / "config.json").write_text('{"model_type": "simpo_dna", ')
    else:
        data = (out / "model.safetensors").read_bytes()
        (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit) as e:
        cli_main(["sample", "--ckpt", str(out), "--num-samples", "2", "--out", str(tmp_path / "x.fasta")])
    err = capsys.readouterr().err.strip().splitlines()
    name = "config.json" if damage == "config" else "model.safetensors"
    assert e.value.code == 2 and len(err) == 1 and name in err[0] and "export-hf" in err[0], err
