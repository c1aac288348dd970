"""No checkpoint a user names is unpickled in full: a crafted pickle (whose ``__reduce__`` would create a marker
file) is refused with one line at every entry point, and the marker never appears. The one full unpickle, a gReLU
oracle, runs only on opt-in (``SIMPO_BIO_TRUST_PICKLE=1`` or the file's sha256 in ``SIMPO_BIO_TRUSTED_SHA256``)."""

from __future__ import annotations

import pathlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import SEQ_LEN, tiny_checkpoints

from simpo_bio.cli import main as cli_main
from simpo_bio.dna import cli as dna_cli
from simpo_bio.dna.models.checkpoints import CheckpointError, UnsafeCheckpointError, load_checkpoint
from simpo_bio.dna.oracles import grelu as grelu_oracle
from simpo_bio.safe_pickle import file_sha256

ROOT = Path(__file__).resolve().parents[2]
BASE = str(ROOT / "configs" / "dna" / "simpo_base.yaml")
GRELU_HP = {"model_params": {"model_type": "ConvModel", "n_tasks": 3},
            "train_params": {"task": "regression", "loss": "mse"}}


class Payload:
    """Unpickled in full, this creates ``marker`` (what arbitrary code from a crafted checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a crafted checkpoint ran code"


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(autouse=True)
def _no_trust(monkeypatch):
    monkeypatch.delenv("SIMPO_BIO_TRUST_PICKLE", raising=False)
    monkeypatch.delenv("SIMPO_BIO_TRUSTED_SHA256", raising=False)


def crafted_lightning(path: Path, marker: Path) -> Path:
    """A fine-tuning checkpoint in every respect but one hyper-parameter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 3, "global_step": 12, "pytorch-lightning_version": "2.6.0", "simpo_bio_model": "SiMPOFineTuning",
                "state_dict": {"policy.backbone.w": torch.zeros(2)},
                "hyper_parameters": {"lr": 1e-3, "scheme": "square_neg", "note": Payload(marker)}}, path)
    return path


def crafted_grelu(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {**GRELU_HP, "x": Payload(marker)}},
               path)
    return path


def _fails_with_one_line(argv, capsys, code=2) -> str:
    with pytest.raises(SystemExit) as exc:
        cli_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == code and len(err) == 1, err
    return err[0]


def test_the_payload_is_live(tmp_path):
    """The crafted file does run code when unpickled in full (so the refusals below are meaningful)."""
    live = tmp_path / "live"
    torch.load(crafted_lightning(tmp_path / "evil.ckpt", live), weights_only=False)
    assert live.exists()


def test_load_checkpoint_refuses_python_objects(tmp_path, marker):
    path = crafted_lightning(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError) as exc:
        load_checkpoint(path)
    msg = str(exc.value)
    assert isinstance(exc.value, CheckpointError) and "\n" not in msg
    assert str(path) in msg and "refused" in msg and "Python objects" in msg and "pathlib" in msg


@pytest.mark.parametrize("command", ["sample", "evaluate", "export-hf"])
def test_commands_refuse_a_crafted_ckpt(command, ckpts, tmp_path, marker, capsys):
    evil = crafted_lightning(tmp_path / "evil.ckpt", marker)
    argv = {"sample": ["sample", "--ckpt", str(evil), "--num-samples", "2", "--no-score",
                       "--out", str(tmp_path / "x.fasta")],
            "evaluate": ["evaluate", "--ckpt", str(evil), "--eval-oracle", str(ckpts["eval_oracle"]),
                         "--num-samples", "2", "--out", ""],
            "export-hf": ["export-hf", "--ckpt", str(evil), "--out", str(tmp_path / "hf")]}[command]
    line = _fails_with_one_line(argv, capsys)
    assert line.startswith(f"simpo-bio {command}: error:") and "evil.ckpt" in line and "refused" in line
    assert not (tmp_path / "x.fasta").exists() and not (tmp_path / "hf").exists()


def test_demo_resume_check_refuses_a_planted_last_ckpt(tmp_path, marker, capsys):
    last = crafted_lightning(tmp_path / "D" / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(SystemExit) as exc, dna_cli._user_errors("demo"):
        dna_cli._resume_args(last, fresh=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "last.ckpt" in err[0] and "refused" in err[0], err
    assert dna_cli._resume_args(last, fresh=True) == (["--ckpt_path=null"], "")  # --fresh does not read it


def test_pooled_runs_refuse_a_crafted_checkpoint(tmp_path, marker):
    from simpo_bio.dna.design.designs import (
        pooled_policies,  # what ExportDesigns(pool_with=...) loads them with
    )

    evil = crafted_lightning(tmp_path / "run_seed1" / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        pooled_policies([evil], seq_len=SEQ_LEN, device="cpu")


@pytest.mark.parametrize("where", ["--ckpt_path", "--model.init_args.pretrained"])
def test_fit_refuses_a_crafted_checkpoint(where, tmp_path, marker, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    evil = crafted_lightning(tmp_path / "evil.ckpt", marker)
    extra = [where, str(evil)] + (["--ckpt_path", "null"] if where != "--ckpt_path" else [])
    line = _fails_with_one_line(["fit", "--config", BASE, *extra, "--trainer.logger", "false",
                                 "--trainer.callbacks", "[]"], capsys)
    assert line.startswith("simpo-bio fit: error:") and "evil.ckpt" in line and "refused" in line


def test_fit_refuses_a_planted_last_ckpt(ckpts, tmp_path, marker, monkeypatch, capsys):
    """``ckpt_path: last`` (the shipped configs) is read by the trainer itself, told weights_only=True (even where
    torch's default is a full unpickle)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    crafted_lightning(tmp_path / "ck" / "last.ckpt", marker)
    callbacks = f"[{{class_path: simpo_bio.dna.models.checkpoints.ResumableCheckpoint, init_args: {{dirpath: {tmp_path / 'ck'}}}}}]"
    line = _fails_with_one_line(["fit", "--config", BASE, "--model.init_args.pretrained", str(ckpts["pretrained"]),
                                 "--model.init_args.oracle", str(ckpts["oracle"]), "--model.init_args.sampling.seq_len",
                                 str(SEQ_LEN), "--trainer.logger", "false", "--trainer.accelerator", "cpu",
                                 "--trainer.callbacks", callbacks], capsys)
    assert line.startswith("simpo-bio fit: error:") and "refused" in line and "weights_only" not in line


def test_control_checkpoint_refuses_python_objects(tmp_path, marker, capsys):
    from simpo_bio.control.checkpoints import CHECKPOINT_KEYS
    from simpo_bio.control.checkpoints import UnsafeCheckpointError as ControlUnsafe
    from simpo_bio.control.checkpoints import load_checkpoint as load_control

    base = {k: {} for k in CHECKPOINT_KEYS} | {"env_steps": 0, "run_id": "r", "evals": []}
    evil = tmp_path / "checkpoint.pt"
    torch.save({**base, "rng": {"numpy": Payload(marker)}}, evil)
    with pytest.raises(ControlUnsafe, match="refused: it holds Python objects") as exc:
        load_control(evil)
    assert "\n" not in str(exc.value) and str(evil) in str(exc.value)
    snapshot = tmp_path / "snapshot.pt"  # torch-safe on the outside, a crafted env snapshot inside
    torch.save({**base, "env_state": [[{"_np_random": ("pickle", pickle.dumps(Payload(marker)))}]]}, snapshot)
    with pytest.raises(ControlUnsafe, match=r"env snapshot \(_np_random\)"):
        load_control(snapshot)
    pytest.importorskip("jsonargparse")
    line = _fails_with_one_line(["control", "--train.resume", str(evil), "--train.out_dir",
                                 str(tmp_path / "out"), "--train.wandb", "false"], capsys)
    assert line.startswith("simpo-bio control: error:") and "refused" in line


def test_control_numpy_state_and_legacy_buffer_load_safely(tmp_path, marker):
    """What control checkpoints hold (numpy RNG states and arrays, pickled env RNGs) loads with weights_only=True;
    a pre-journal pickled replay buffer is read by a restricted unpickler."""
    np = pytest.importorskip("numpy")
    from simpo_bio.control.checkpoints import CHECKPOINT_KEYS, load_legacy_buffer
    from simpo_bio.control.checkpoints import UnsafeCheckpointError as ControlUnsafe
    from simpo_bio.control.checkpoints import load_checkpoint as load_control

    rng = np.random.default_rng(0)
    ckpt = {k: {} for k in CHECKPOINT_KEYS} | {"env_steps": 5, "run_id": "r", "evals": [(5, np.float64(1.5), 0.0)],
                                               "rng": {"numpy": np.random.get_state()}, "obs": np.zeros((2, 3)),
                                               "env_state": [[{"_np_random": ("pickle", pickle.dumps(rng))}]]}
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    back = load_control(tmp_path / "checkpoint.pt")
    assert back["rng"]["numpy"][0] == "MT19937" and np.array_equal(back["rng"]["numpy"][1], ckpt["rng"]["numpy"][1])
    assert back["evals"][0][1] == 1.5 and back["obs"].shape == (2, 3)
    from simpo_bio.safe_pickle import loads

    assert loads(back["env_state"][0][0]["_np_random"][1]).random() == np.random.default_rng(0).random()
    gym = pytest.importorskip("gymnasium")
    buffers = pytest.importorskip("stable_baselines3.common.buffers")
    buf = buffers.ReplayBuffer(8, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), device="cpu", n_envs=2,
                               handle_timeout_termination=False)
    buf.observations[:] = 0.25
    (tmp_path / "buffer.pkl").write_bytes(pickle.dumps(buf))
    restored = load_legacy_buffer(tmp_path / "buffer.pkl")
    assert isinstance(restored, buffers.ReplayBuffer) and float(restored.observations.max()) == 0.25
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ControlUnsafe, match="replay buffer"):
        load_legacy_buffer(tmp_path / "evil.pkl")


# ------------------------------------------------------------------------------------------------------ gReLU
def test_grelu_oracle_is_refused_without_opt_in(ckpts, tmp_path, marker, capsys):
    from simpo_bio.dna.oracles.oracle import load_oracle

    evil = crafted_grelu(tmp_path / "reward_oracle_ft.ckpt", marker)
    assert grelu_oracle.is_grelu_checkpoint(evil)  # the layout check reads it without running anything
    with pytest.raises(UnsafeCheckpointError) as exc:
        load_oracle(evil)
    msg = str(exc.value)
    assert "\n" not in msg and str(evil) in msg and file_sha256(evil) in msg
    assert "SIMPO_BIO_TRUST_PICKLE=1" in msg and "SIMPO_BIO_TRUSTED_SHA256" in msg
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\n" + "ACGT" * 50 + "\n")
    line = _fails_with_one_line(["evaluate", "--fasta", str(fasta), "--eval-oracle", str(evil), "--out", ""], capsys)
    assert line.startswith("simpo-bio evaluate: error:") and "refused" in line
    line = _fails_with_one_line(["sample", "--ckpt", str(ckpts["pretrained"]), "--oracle", str(evil),
                                 "--num-samples", "2", "--out", str(tmp_path / "s.fasta")], capsys)
    assert line.startswith("simpo-bio sample: error:") and "refused" in line


@pytest.mark.parametrize("opt_in", ["env", "sha256"])
def test_opt_in_lets_a_grelu_file_through_to_the_grelu_loader(opt_in, tmp_path, marker, monkeypatch):
    evil = crafted_grelu(tmp_path / "oracle.ckpt", marker)
    calls = []

    class FakeLightningModel:  # stands in for grelu's loader (the next stage); nothing is unpickled here
        @staticmethod
        def load_from_checkpoint(path, **kwargs):
            calls.append(path)
            raise RuntimeError("stop here")

    monkeypatch.setattr(grelu_oracle, "_require_grelu", lambda path: FakeLightningModel)
    if opt_in == "env":
        monkeypatch.setenv("SIMPO_BIO_TRUST_PICKLE", "1")
    else:
        monkeypatch.setenv("SIMPO_BIO_TRUSTED_SHA256", "0" * 64)  # another file's digest: still refused
        with pytest.raises(UnsafeCheckpointError):
            grelu_oracle.load_grelu_net(evil)
        monkeypatch.setenv("SIMPO_BIO_TRUSTED_SHA256", f"{'0' * 64}, {file_sha256(evil).upper()}")
    with pytest.raises(CheckpointError, match="stop here"):
        grelu_oracle.load_grelu_net(evil)
    assert calls == [str(evil)]


# --------------------------------------------------------------------------------------- what still loads
def test_shipped_checkpoints_load_through_the_safe_loader():
    from simpo_bio.dna.models.policies import load_policy
    from simpo_bio.dna.oracles.oracle import load_oracle

    shipped = sorted((ROOT / "checkpoints" / "dna").glob("*.ckpt"))
    assert len(shipped) >= 3
    for path in shipped:
        assert "state_dict" in load_checkpoint(path), path
    policy, info = load_policy(ROOT / "checkpoints" / "dna" / "pretrained_dhs.ckpt")
    assert info["kind"] == "pretrained"
    assert load_oracle(ROOT / "checkpoints" / "dna" / "oracle_eval.ckpt") is not None


def test_a_fresh_lightning_last_ckpt_loads_through_the_safe_loader(tmp_path):
    import resume_job

    from simpo_bio.dna.models.policies import load_policy

    resume_job.run(tmp_path, 1)  # a 1-iteration SiMPO fit with ResumableCheckpoint (RNG states, run identity)
    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(last)
    assert ckpt["simpo_rng"] and ckpt["hyper_parameters"]["seed"] == 1
    assert load_policy(last)[1]["kind"] == "finetuned"


def test_the_one_full_unpickle_is_the_grelu_loader():
    out = subprocess.run(["git", "grep", "-n", "weights_only=False", "--", "simpo_bio"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode > 1:
        pytest.skip(f"git grep unavailable: {out.stderr.strip()}")
    hits = out.stdout.strip().splitlines()
    assert len(hits) == 1 and hits[0].startswith("simpo_bio/dna/oracles/grelu.py:"), hits
    assert "load_from_checkpoint" in hits[0]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
