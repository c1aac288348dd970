"""Transformer denoiser (simpo_bio/dna/models/transformer.py): shapes, the ``subs`` invariants, training, fine-tuning."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

pytest.importorskip("transformers")

from simpo_bio.diffusion.masked import MaskedDiffusion  # noqa: E402
from simpo_bio.dna.models.backbones import DilatedCNN  # noqa: E402
from simpo_bio.dna.models.transformer import TransformerDenoiser, backbone_config, build_backbone  # noqa: E402

TINY = {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "intermediate_size": 32, "max_len": 32}


def tiny_model(seed: int = 0) -> MaskedDiffusion:
    torch.manual_seed(seed)
    return MaskedDiffusion(TransformerDenoiser(**TINY), mask_index=4)


def structured(n: int, length: int = 16, seed: int = 0) -> torch.Tensor:
    """Easy data: each sequence counts up mod 4 from a random base (one base determines the rest)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 4, (n, 1), generator=g)
    return (start + torch.arange(length)) % 4


def test_shapes_and_inputs():
    net = TransformerDenoiser(**TINY).eval()
    x = torch.randint(0, 5, (3, 20))
    with torch.no_grad():
        out = net(x, torch.rand(3))
        assert out.shape == (3, 20, 5) and out.dtype == torch.float32
        assert torch.equal(out, net(x, None))  # no time input: sigma is ignored
        onehot = torch.nn.functional.one_hot(x, 5).float()
        assert torch.allclose(net(onehot, None), out, atol=1e-5)
    assert net.encoder.embeddings.word_embeddings.padding_idx is None  # no token id is frozen as padding
    with pytest.raises(ValueError, match="max_len"):
        net(torch.zeros(1, 40, dtype=torch.long))
    with pytest.raises(ValueError, match="divide"):
        TransformerDenoiser(hidden_size=10, num_heads=3)


def test_config_rebuilds_the_backbone():
    net = TransformerDenoiser(**TINY)
    cfg = backbone_config(net)
    assert cfg["architecture"] == "transformer"
    again = build_backbone(cfg)
    again.load_state_dict(net.state_dict())
    assert isinstance(build_backbone(backbone_config(DilatedCNN(hidden_dim=8, num_stacks=1))), DilatedCNN)
    with pytest.raises(ValueError, match="architecture"):
        build_backbone({"architecture": "lstm"})


def test_subs_invariants_through_masked_diffusion():
    model = tiny_model().eval()
    x = structured(4, 16)
    z = x.clone()
    z[:, ::3] = 4  # mask every third position
    with torch.no_grad():
        logp = model(z, torch.full((4,), 0.7))
    masked = z == 4
    assert torch.isneginf(logp[..., 4]).all()  # the mask token is never predicted
    # unmasked positions carry their token over: log-prob 0 there, -inf elsewhere
    kept = logp[~masked]
    assert torch.equal(kept.gather(-1, z[~masked][:, None]).squeeze(-1), torch.zeros(int((~masked).sum())))
    assert (torch.isneginf(kept).sum(-1) == 4).all()
    # masked positions: a distribution over the four bases
    assert torch.allclose(logp[masked][:, :4].exp().sum(-1), torch.ones(int(masked.sum())), atol=1e-5)


def test_sampler_gives_data_tokens_only():
    x = tiny_model().sample(5, 12, num_steps=6, seed=0)
    assert x.shape == (5, 12) and int(x.max()) < 4 and int(x.min()) >= 0


def test_short_training_run_lowers_the_elbo():
    model = tiny_model()
    data = structured(64, 16)
    probe = structured(64, 16, seed=1)

    def elbo() -> float:
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            return float(torch.stack([model.elbo_loss(probe, generator=g) for _ in range(4)]).mean())

    before = elbo()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        loss = model.elbo_loss(data, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = elbo()
    assert after < 0.5 * before, (before, after)  # measured: 26.4 -> 5.9 nats per sequence


def test_pretraining_module_with_a_transformer(tmp_path):
    from simpo_bio.dna.models.pretrain import MaskedDiffusionLM, export_state, load_pretrained

    lm = MaskedDiffusionLM(architecture="transformer", transformer=TINY, lr=3e-3, warmup_steps=1,
                           num_eval_samples=0, schedule_horizon="steps")
    assert isinstance(lm.model.backbone, TransformerDenoiser)
    loader = torch.utils.data.DataLoader(structured(256, 16), batch_size=32, shuffle=True)
    probe = structured(64, 16, seed=1)

    def elbo() -> float:
        with torch.no_grad():
            return float(lm.model.elbo_loss(probe, generator=torch.Generator().manual_seed(0)).mean())

    before = elbo()
    trainer = pl.Trainer(max_steps=24, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(lm, train_dataloaders=loader)
    assert elbo() < before
    torch.save(export_state(lm), tmp_path / "tf.ckpt")
    model = load_pretrained(tmp_path / "tf.ckpt")
    assert isinstance(model.backbone, TransformerDenoiser)
    x = structured(2, 16)
    with torch.no_grad():
        assert torch.equal(model.backbone(x, None), lm.ema.backbone.eval()(x, None))


def test_fine_tuning_a_transformer_policy(tmp_path):
    from tiny_models import finetuning

    from simpo_bio.dna.models.policies import load_policy

    module = finetuning(pretrained=tiny_model(), oracle=lambda x: (x == 2).float().mean(-1), group_size=4,
                             num_groups=1, seq_len=12, update_epochs=1)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)])
    trainer.fit(module)
    assert len(module.history) == 1
    policy, info = load_policy(tmp_path / "last.ckpt")
    assert info["kind"] == "finetuned" and isinstance(policy.backbone, TransformerDenoiser)
    x = structured(2, 12)
    with torch.no_grad():
        assert torch.equal(policy.backbone(x, None), module.policy.backbone.eval()(x, None))
