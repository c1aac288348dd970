"""gReLU oracles behind ``load_oracle`` (DRAKES setting): small gReLU models saved by gReLU / Lightning.

Skipped without the ``grelu`` package (the ``[drakes]`` extra: ``pip install 'simpo-bio[drakes]'``), except the
test of the one-line error that names the extra.
"""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import torch

from simpo_bio.dna.oracles.grelu import is_grelu_checkpoint, split_spec
from simpo_bio.dna.oracles.oracle import RegressionOracle, load_oracle

TASKS = ["hepg2", "k562", "sknsh"]


def _save(model, path):
    """What ``train_on_dataset`` leaves in a DRAKES oracle file: task names and numpy metrics (so the safe
    ``weights_only`` loader refuses it, as it refuses the DRAKES files on torch >= 2.6)."""
    import pytorch_lightning as pl

    model.data_params["tasks"] = {"name": TASKS[: model.model_params["n_tasks"]]}
    model.performance = {"val_mse": np.float64(0.5)}
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", max_epochs=0,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def _onehot(tokens):
    return torch.nn.functional.one_hot(tokens, 4).float().transpose(1, 2)


@pytest.fixture(autouse=True)
def _trusted(monkeypatch):
    """The files here are the tests' own: trusted (a gReLU checkpoint is unpickled in full only on opt-in)."""
    monkeypatch.setenv("SIMPO_BIO_TRUST_PICKLE", "1")


@pytest.fixture(scope="module")
def grelu_lightning():
    return pytest.importorskip("grelu.lightning", reason="grelu not installed (the [drakes] extra)")


def test_small_grelu_regressor_loads_through_load_oracle_and_matches_grelu_forward(grelu_lightning, tmp_path):
    torch.manual_seed(0)
    model = grelu_lightning.LightningModel(
        model_params={"model_type": "ConvModel", "n_tasks": 3, "stem_channels": 8, "stem_kernel_size": 5,
                      "n_conv": 2, "channel_init": 8, "final_pool_func": "avg"},
        train_params={"task": "regression", "loss": "mse"}).eval()
    path = _save(model, tmp_path / "reward_oracle_ft.ckpt")
    with pytest.raises(pickle.UnpicklingError):  # torch's safe loader refuses the file, as the real one
        torch.load(path, weights_only=True)
    assert is_grelu_checkpoint(path)
    tokens = torch.randint(0, 4, (5, 200))
    with torch.no_grad():
        expected = model(_onehot(tokens))  # [B, 3, 1]
    assert expected.shape == (5, 3, 1)

    oracle = load_oracle(path)
    assert isinstance(oracle, RegressionOracle) and oracle.output_names == TASKS
    torch.testing.assert_close(oracle(tokens), expected[:, 0, 0])  # default: index 0 = HepG2
    torch.testing.assert_close(oracle.net.predictions(tokens), expected[..., 0])
    torch.testing.assert_close(load_oracle(f"{path}?task=k562")(tokens), expected[:, 1, 0])
    spec = load_oracle(f"{path}?task=2&transform=specificity")(tokens)
    torch.testing.assert_close(spec, expected[:, 2, 0] - expected[:, :2, 0].max(1).values)
    assert oracle(["ACGT" * 50]).shape == (1,)
    with pytest.raises(ValueError, match="unknown task"):
        load_oracle(f"{path}?task=liver")
    with pytest.raises(ValueError, match="unknown options"):
        load_oracle(f"{path}?index=1")
    with pytest.raises(ValueError, match="mask"):
        oracle(torch.full((1, 200), 4))


def test_enformer_pretrained_checkpoint_is_rebuilt_offline_as_enformer_model(grelu_lightning, tmp_path, monkeypatch):
    """DRAKES' oracles were saved as EnformerPretrainedModel, whose constructor downloads weights; here a small
    Enformer saved under that model type loads without any download and gives the saved model's outputs."""
    import grelu.resources

    torch.manual_seed(0)
    params = {"model_type": "EnformerModel", "n_tasks": 3, "n_conv": 3, "channels": 384, "n_transformers": 1,
              "n_heads": 2, "key_len": 8}
    model = grelu_lightning.LightningModel(model_params=dict(params), train_params={"task": "regression",
                                                                                   "loss": "mse"}).eval()
    path = _save(model, tmp_path / "enformer.ckpt")
    ckpt = torch.load(path, weights_only=False)
    ckpt["hyper_parameters"]["model_params"]["model_type"] = "EnformerPretrainedModel"
    torch.save(ckpt, path)

    def no_download(*args, **kwargs):
        raise AssertionError("the loader tried to download Enformer weights")

    monkeypatch.setattr(grelu.resources, "download_model", no_download)
    tokens = torch.randint(0, 4, (3, 200))
    with torch.no_grad():
        expected = model(_onehot(tokens))[:, 0, 0]
    oracle = load_oracle(path)
    torch.testing.assert_close(oracle(tokens), expected)


def test_atac_style_binary_classifier_gives_sigmoid_column(grelu_lightning, tmp_path):
    torch.manual_seed(1)
    model = grelu_lightning.LightningModel(
        model_params={"model_type": "ConvModel", "n_tasks": 7, "stem_channels": 8, "stem_kernel_size": 5,
                      "n_conv": 2, "channel_init": 8, "final_pool_func": "avg"},
        train_params={"task": "binary", "loss": "bce"}).eval()
    path = _save(model, tmp_path / "binary_atac_cell_lines.ckpt")
    tokens = torch.randint(0, 4, (4, 200))
    prob = load_oracle(f"{path}?task=1")(tokens)
    with torch.no_grad():
        torch.testing.assert_close(prob, torch.sigmoid(model.model(_onehot(tokens)))[:, 1, 0])
    assert bool(((prob > 0) & (prob < 1)).all())


def test_a_grelu_checkpoint_without_grelu_names_the_extra(tmp_path, monkeypatch, capsys):
    path = tmp_path / "oracle.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {
        "model_params": {"model_type": "EnformerPretrainedModel", "n_tasks": 3},
        "train_params": {"task": "regression", "loss": "mse"}}}, path)
    assert is_grelu_checkpoint(path)
    monkeypatch.setitem(sys.modules, "grelu.lightning", None)  # makes `import grelu.lightning` fail
    with pytest.raises(ImportError, match=r"simpo-bio\[drakes\]"):
        load_oracle(path)
    from simpo_bio.cli import main as cli_main

    fasta = tmp_path / "x.fasta"
    fasta.write_text(">a\n" + "ACGT" * 50 + "\n")
    with pytest.raises(SystemExit) as e:  # the command: one line, exit 2 (was an ImportError traceback)
        cli_main(["evaluate", "--fasta", str(fasta), "--eval-oracle", str(path), "--out", ""])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "simpo-bio[drakes]" in err[0] and "oracle.ckpt" in err[0]


def test_options_only_for_foreign_checkpoints_and_spec_parsing(tmp_path):
    assert split_spec("a/b.ckpt?task=k562&transform=identity") == ("a/b.ckpt", {"task": "k562",
                                                                               "transform": "identity"})
    assert split_spec("a/b.ckpt") == ("a/b.ckpt", {})
    weird = tmp_path / "odd?name.ckpt"
    weird.write_bytes(b"")
    assert split_spec(weird) == (str(weird), {})
    from tiny_models import tiny_oracle_ckpt

    ours = tiny_oracle_ckpt(tmp_path / "oracle.ckpt")
    assert not is_grelu_checkpoint(ours)
    with pytest.raises(ValueError, match="gReLU checkpoints only"):
        load_oracle(f"{ours}?task=1")
