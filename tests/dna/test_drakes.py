"""The DRAKES setting without the real files: small files of the same layouts, made here.

A DRAKES ``pretrained.ckpt`` is a Lightning checkpoint whose ``hyper_parameters`` hold an OmegaConf ``DictConfig``
(``drakes_dna/diffusion_gosai_update.py``); writing one needs ``omegaconf`` (the ``[drakes]`` extra), reading it
does not (restricted unpickler). Tests that write one are skipped without ``omegaconf``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.data import drakes_assets
from simpo_bio.dna.data.alphabet import decode
from simpo_bio.dna.data.dhs import ChecksumError
from simpo_bio.dna.evaluation import drakes_protocol
from simpo_bio.dna.models import drakes as drakes_model
from simpo_bio.dna.models.backbones import DilatedCNN, drakes_config
from simpo_bio.dna.models.checkpoints import CheckpointArchitectureError
from simpo_bio.dna.models.pretrain import load_pretrained

L = 200


def drakes_ckpt(path, *, hidden=8, stacks=1, backbone="cnn", seed=0):
    """A checkpoint with the layout of DRAKES' pretrained.ckpt (small CNN) and its raw / EMA weights."""
    omegaconf = pytest.importorskip("omegaconf", reason="writing a DRAKES-layout file needs omegaconf ([drakes])")
    from lightning.fabric.utilities.data import AttributeDict

    torch.manual_seed(seed)
    net = DilatedCNN(**{**drakes_config(), "hidden_dim": hidden, "num_stacks": stacks})
    raw = {f"backbone.{k}": v.clone() for k, v in net.state_dict().items()}
    shadow = [p.detach() + 0.01 for p in net.parameters() if p.requires_grad]
    cfg = omegaconf.OmegaConf.create({
        "mode": "train", "diffusion": "absorbing_state", "backbone": backbone, "parameterization": "subs",
        "time_conditioning": False, "T": 0, "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
        "model": {"name": "dnaconv", "type": "cnn", "length": L, "hidden_dim": hidden, "num_cnn_stacks": stacks,
                  "dropout": 0.0, "clean_data": False, "cls_free_guidance": False},
        "sampling": {"predictor": "ddpm", "steps": 128, "noise_removal": True},
        "training": {"ema": 0.9999, "sampling_eps": 1e-3},
        "loader": {"global_batch_size": 512, "batch_size": "${div_up:${.global_batch_size}, 1}"}})
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.2.1", "state_dict": raw,
                "hyper_parameters": AttributeDict(config=cfg, eval=False),
                "ema": {"decay": 0.9999, "num_updates": 100, "shadow_params": shadow, "collected_params": []},
                "loops": {"fit_loop": {}}}, path)
    return path, net, shadow


def test_drakes_layout_has_129_backbone_tensors():
    assert len(DilatedCNN(**drakes_config()).state_dict()) == 129


def test_drakes_checkpoint_loads_raw_or_ema_and_samples(tmp_path, monkeypatch):
    path, net, shadow = drakes_ckpt(tmp_path / "pretrained.ckpt")
    with pytest.raises(pickle.UnpicklingError):  # torch's safe loader refuses the file, as the real one
        torch.load(path, weights_only=True)
    assert drakes_model.is_drakes_checkpoint(path)
    monkeypatch.setitem(sys.modules, "omegaconf", None)  # reading needs no omegaconf
    model = load_pretrained(path)
    assert isinstance(model, MaskedDiffusion) and not model.training
    for k, v in net.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[k], v)  # raw weights by default
    ema = load_pretrained(f"{path}?weights=ema")
    trainable = [p for p in ema.backbone.parameters() if p.requires_grad]
    for p, s in zip(trainable, shadow):
        torch.testing.assert_close(p, s)
    torch.testing.assert_close(ema.backbone.time_embedder[0].W, net.time_embedder[0].W)  # frozen: not in EMA
    x = drakes_model.drakes_sample(model, 6, L, batch_size=4, num_steps=8, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, L) and int(x.max()) < 4 and int(x.min()) >= 0
    with pytest.raises(ValueError, match="weights"):
        load_pretrained(f"{path}?weights=best")


def test_load_policy_reads_a_drakes_checkpoint_without_omegaconf(tmp_path, monkeypatch):
    from simpo_bio.dna.finetune.module import load_policy

    path, net, _ = drakes_ckpt(tmp_path / "pretrained.ckpt")
    monkeypatch.setitem(sys.modules, "omegaconf", None)  # `simpo-bio sample --ckpt pretrained.ckpt` needs no extra
    policy, info = load_policy(path)
    assert info["kind"] == "pretrained"
    torch.testing.assert_close(policy.backbone.linear.weight, net.linear.weight)


def test_other_drakes_configs_are_refused(tmp_path):
    path, _, _ = drakes_ckpt(tmp_path / "dit.ckpt", backbone="dit")
    with pytest.raises(CheckpointArchitectureError, match="backbone"):
        load_pretrained(path)


def test_our_checkpoints_take_no_options(tmp_path):
    from tiny_models import tiny_pretrained_ckpt

    ours = tiny_pretrained_ckpt(tmp_path / "p.ckpt")
    assert not drakes_model.is_drakes_checkpoint(ours)
    with pytest.raises(ValueError, match="DRAKES checkpoints only"):
        load_pretrained(f"{ours}?weights=ema")


def test_likelihood_follows_the_drakes_discretisation():
    torch.manual_seed(0)
    model = MaskedDiffusion(DilatedCNN(hidden_dim=8, num_stacks=1, dilations=(1, 2), kernel_size=3)).eval()
    x = torch.randint(0, 4, (3, 12))
    a = drakes_protocol.drakes_log_likelihood(model, x, num_steps=16, generator=torch.Generator().manual_seed(1))
    b = drakes_protocol.drakes_log_likelihood(model, x, num_steps=16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and bool((a < 0).all())
    # one step from t=1: every position is masked with probability m(1) = 0.999, weight (m(1) - m(eps)) / m(1)
    gen = torch.Generator().manual_seed(2)
    one = drakes_protocol.drakes_log_likelihood(model, x, num_steps=1, generator=gen)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(2))
    move = model.schedule.move_chance(torch.tensor([1.0, 1e-5]))
    z = torch.where(u < move[0], torch.full_like(x, 4), x)
    logp = model(z, model.schedule.sigma(torch.ones(3))).gather(-1, x[..., None]).squeeze(-1)
    torch.testing.assert_close(one, logp.sum(-1) * (move[0] - move[1]) / move[0])


def gosai_csv(path, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), L)) for _ in range(n)]
    df = pd.DataFrame({"seq": seqs, "hepg2": rng.normal(size=n), "k562": rng.normal(size=n),
                       "sknsh": rng.normal(size=n)})
    df.to_csv(path, index=False)
    return df


def test_top_reference_is_above_the_999th_percentile(tmp_path):
    df = gosai_csv(tmp_path / "gosai_all.csv")
    ref = drakes_protocol.top_hepg2_reference(tmp_path / "gosai_all.csv")
    expected = df[df.hepg2 > np.quantile(df.hepg2, 0.999)]
    assert decode(ref) == expected.seq.tolist() and len(ref) == 2


def test_protocol_metrics(tmp_path, monkeypatch):
    from Bio import motifs as bio_motifs
    from scipy.stats import pearsonr, spearmanr

    monkeypatch.setenv("SIMPO_BIO_CACHE", str(tmp_path / "cache"))
    gen = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 4, (40, L), generator=gen)
    designs = torch.randint(0, 4, (30, L), generator=gen)
    motifs = [bio_motifs.create([s]) for s in ("ACGTA", "TTGCA", "GGGCC", "CATG")]
    for i, m in enumerate(motifs):
        m.name = f"m{i}"
    from simpo_bio.dna.evaluation.metrics import MotifScanner

    scanner = MotifScanner.from_motifs(motifs, fpr=1e-2)
    protocol = drakes_protocol.DrakesProtocol(lambda t: t.float().mean(1), ref, atac_oracle=lambda t: (t[:, 0] == 0).float(),
                                     scanner=scanner)
    row, per = protocol.evaluate(designs)
    assert row["pred_activity_median"] == pytest.approx(float(np.median(designs.float().mean(1).numpy())))
    assert row["atac_acc"] == pytest.approx(float((designs[:, 0] == 0).float().mean()))
    from simpo_bio.dna.evaluation.metrics import kmer_counts_per_sequence

    a, b = kmer_counts_per_sequence(designs).sum(0), kmer_counts_per_sequence(ref).sum(0)
    assert row["kmer3_corr"] == pytest.approx(pearsonr(a, b)[0], abs=1e-9)
    ca, cb = scanner.count(designs).sum(0).numpy(), scanner.count(ref).sum(0).numpy()
    keep = (ca > 0) & (cb > 0)
    assert keep.sum() >= 3
    assert row["jaspar_corr"] == pytest.approx(spearmanr(ca[keep], cb[keep])[0], abs=1e-9)
    assert len(per) == 30 and "app_log_lik" not in row
    table = drakes_protocol.drakes_table({"x": row})
    assert "Pred-Activity" in table and "DRAKES (DRAKES paper)" in table


def test_fetch_unpacks_checks_and_records(tmp_path, monkeypatch):
    src = tmp_path / "src" / "data_and_model" / "mdlm"
    for rel in drakes_assets.DRAKES_FILES.values():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(rel.encode())
    archive = tmp_path / "DRAKES_data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in drakes_assets.DRAKES_FILES.values():
            zf.write(src / rel, f"data_and_model/mdlm/{rel}")
    dest = tmp_path / "cache"
    root = drakes_assets.fetch_drakes(archive, dest=dest)
    assert root == dest / "data_and_model" / "mdlm"
    record = json.loads((dest / drakes_assets.RECORD).read_text())
    assert record["pretrained"]["sha256"] == hashlib.sha256(b"outputs_gosai/pretrained.ckpt").hexdigest()
    assert drakes_assets.fetch_drakes(dest=dest) == root  # verify-only call
    (root / drakes_assets.DRAKES_FILES["atac"]).write_bytes(b"tampered")
    with pytest.raises(ChecksumError):
        drakes_assets.fetch_drakes(dest=dest)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        drakes_assets.fetch_drakes(evil, dest=tmp_path / "other")
    with pytest.raises(ValueError, match="--path"):
        drakes_assets.fetch_drakes(dest=tmp_path / "empty")


def test_gosai_table_feeds_the_sequence_datamodule(tmp_path):
    from simpo_bio.dna.data.datamodules import SequenceDataModule

    gosai_csv(tmp_path / "gosai_all.csv", n=50)
    dm = SequenceDataModule(source=str(tmp_path / "gosai_all.csv"), batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (8, L) and batch.dtype == torch.long


def test_cli_fetch_and_evaluate_protocol_drakes(tmp_path, capsys, monkeypatch):
    from simpo_bio.dna.cli import data_main, evaluate_main
    from simpo_bio.dna.models.checkpoints import record_model_kind
    from simpo_bio.dna.oracles.training import CellTypeClassifier

    monkeypatch.setenv("SIMPO_BIO_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "src" / "mdlm"
    files = {k: src / rel for k, rel in drakes_assets.DRAKES_FILES.items()}
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    drakes_ckpt(files["pretrained"])
    gosai_csv(files["gosai_csv"], n=500)
    torch.manual_seed(0)  # stand-in oracles of our own kind (the gReLU ones are tested in test_grelu_oracle.py)
    m = CellTypeClassifier(channels=8, first_kernel=5, kernel=3, num_blocks=1, pool=2, seq_len=L)
    ckpt = {"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}
    record_model_kind(ckpt, "CellTypeClassifier")
    for key in ("oracle_ft", "oracle_eval", "atac"):
        torch.save(ckpt, files[key])
    archive = tmp_path / "DRAKES_data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in files.values():
            zf.write(p, str(p.relative_to(tmp_path / "src")))
    data_main(["fetch", "drakes", "--path", str(archive)])
    assert "sha256" in capsys.readouterr().out
    root = tmp_path / "cache" / "drakes"
    evaluate_main(["--protocol", "drakes", "--ckpt", str(root / "mdlm" / drakes_assets.DRAKES_FILES["pretrained"]),
                   "--drakes-dir", str(root), "--atac-oracle", str(files["atac"]), "--no-jaspar",
                   "--num-samples", "8", "--num-steps", "4", "--out", str(tmp_path / "m.csv")])
    out = capsys.readouterr().out
    assert "App-Log-Lik" in out and "ATAC-Acc" in out
    row = pd.read_csv(tmp_path / "m.csv").iloc[0]
    assert row["n"] == 8 and np.isfinite(row["app_log_lik"])
