"""Dilated CNN backbone: shapes, and loading a state dict in the DRAKES / Dirichlet-flow-matching layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simpo_bio.dna.models.backbones import DilatedCNN, drakes_config, load_drakes_state_dict

torch.set_num_threads(1)
DRAKES_DILATIONS = (1, 1, 4, 16, 64)


def drakes_layout(hidden: int, stacks: int, vocab: int = 5, k: int = 9) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the DRAKES CNN (``CNNModel`` of DFM as used by DRAKES' MDLM), written from its description."""
    n = 5 * stacks
    layout = {
        "linear.weight": (hidden, vocab, k),
        "linear.bias": (hidden,),
        "time_embedder.0.W": (hidden // 2,),
        "time_embedder.1.weight": (hidden, hidden),
        "time_embedder.1.bias": (hidden,),
    }
    for i in range(n):
        layout[f"convs.{i}.weight"] = (hidden, hidden, k)
        layout[f"convs.{i}.bias"] = (hidden,)
    for i in range(n):
        layout[f"time_layers.{i}.dense.weight"] = (hidden, hidden)
        layout[f"time_layers.{i}.dense.bias"] = (hidden,)
    for i in range(n):
        layout[f"norms.{i}.weight"] = (hidden,)
        layout[f"norms.{i}.bias"] = (hidden,)
    layout.update({
        "final_conv.0.weight": (hidden, hidden, 1),
        "final_conv.0.bias": (hidden,),
        "final_conv.2.weight": (vocab, hidden, 1),
        "final_conv.2.bias": (vocab,),
    })  # fmt: skip
    return layout


def synthetic_drakes_checkpoint(hidden: int, stacks: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    layout = drakes_layout(hidden, stacks)
    state = {"backbone." + k: torch.randn(shape, generator=g) * 0.2 for k, shape in layout.items()}
    for i in range(5 * stacks):  # LayerNorm scales near 1
        state[f"backbone.norms.{i}.weight"] += 1.0
    # what else a DRAKES Lightning checkpoint carries next to the backbone
    state["train_metrics.nll.mean_value"] = torch.tensor(0.0)
    trainable = [state["backbone." + k] for k in layout if k != "time_embedder.0.W"]
    ema = [t + 0.01 * torch.randn(t.shape, generator=g) for t in trainable]
    return {"state_dict": state, "ema": {"shadow_params": ema, "decay": 0.9999}, "epoch": 3}


def reference_forward(state: dict, tokens: torch.Tensor, stacks: int) -> torch.Tensor:
    """The DRAKES CNN's computation (one-hot -> conv9 -> relu -> residual dilated blocks -> 1x1 head), no time."""
    s = {k.removeprefix("backbone."): v for k, v in state.items()}
    # DFM builds its block list layer-major: every copy of conv j of the stack, then conv j + 1, ...
    dilations = [d for d in DRAKES_DILATIONS for _ in range(stacks)]
    x = F.one_hot(tokens, 5).float().transpose(1, 2)
    feat = F.relu(F.conv1d(x, s["linear.weight"], s["linear.bias"], padding=4))
    t = torch.zeros(tokens.shape[0])
    proj = t[:, None] * s["time_embedder.0.W"][None] * 2 * torch.pi
    temb = F.relu(F.linear(torch.cat([proj.sin(), proj.cos()], -1), s["time_embedder.1.weight"], s["time_embedder.1.bias"]))
    for i, d in enumerate(dilations):
        h = feat + F.linear(temb, s[f"time_layers.{i}.dense.weight"], s[f"time_layers.{i}.dense.bias"])[:, :, None]
        h = F.layer_norm(h.transpose(1, 2), (feat.shape[1],), s[f"norms.{i}.weight"], s[f"norms.{i}.bias"])
        h = F.relu(F.conv1d(h.transpose(1, 2), s[f"convs.{i}.weight"], s[f"convs.{i}.bias"], dilation=d, padding=4 * d))
        feat = feat + h
    out = F.conv1d(F.relu(F.conv1d(feat, s["final_conv.0.weight"], s["final_conv.0.bias"])),
                   s["final_conv.2.weight"], s["final_conv.2.bias"])  # fmt: skip
    return out.transpose(1, 2)


def test_shapes_and_one_hot_input():
    net = DilatedCNN(hidden_dim=16, num_stacks=1, block_order="interleaved")
    x = torch.randint(0, 5, (3, 50))
    out = net(x, torch.rand(3))
    assert out.shape == (3, 50, 5)
    torch.testing.assert_close(net(F.one_hot(x, 5).float(), torch.rand(3)), out)
    assert net.block_dilations == DRAKES_DILATIONS
    with pytest.raises(ValueError, match="kernel_size"):
        DilatedCNN(kernel_size=4)
    with pytest.raises(ValueError, match="block_order"):
        DilatedCNN(block_order="zigzag")


def test_time_conditioning_flag():
    torch.manual_seed(0)
    x = torch.randint(0, 5, (2, 30))
    off = DilatedCNN(hidden_dim=8, num_stacks=1, time_conditioning=False)
    torch.testing.assert_close(off(x, torch.tensor([0.1, 0.2])), off(x, torch.tensor([3.0, 5.0])))
    on = DilatedCNN(hidden_dim=8, num_stacks=1, time_conditioning=True)
    assert not torch.allclose(on(x, torch.tensor([0.1, 0.2])), on(x, torch.tensor([3.0, 5.0])))


def test_drakes_config_has_the_drakes_parameter_layout():
    net = DilatedCNN(**drakes_config())
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert own == drakes_layout(128, 4)
    assert [c.dilation[0] for c in net.convs] == [1] * 8 + [4] * 4 + [16] * 4 + [64] * 4
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert "time_embedder.0.W" not in trainable


def test_load_drakes_state_dict_reproduces_the_drakes_computation():
    hidden, stacks = 16, 4
    ckpt = synthetic_drakes_checkpoint(hidden, stacks)
    net = DilatedCNN(**{**drakes_config(), "hidden_dim": hidden})
    load_drakes_state_dict(net, ckpt, use_ema=False)
    assert torch.equal(net.convs[7].weight, ckpt["state_dict"]["backbone.convs.7.weight"])
    x = torch.randint(0, 5, (4, 200), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = net(x, torch.rand(4))  # time conditioning off: sigma ignored, as in DRAKES
        ref = reference_forward(ckpt["state_dict"], x, stacks)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_load_drakes_state_dict_applies_ema_in_parameter_order():
    ckpt = synthetic_drakes_checkpoint(16, 4, seed=2)
    net = DilatedCNN(**{**drakes_config(), "hidden_dim": 16})
    load_drakes_state_dict(net, ckpt, use_ema=True)
    trainable = [p for p in net.parameters() if p.requires_grad]
    for p, s in zip(trainable, ckpt["ema"]["shadow_params"]):
        assert torch.equal(p, s)
    assert torch.equal(net.time_embedder[0].W, ckpt["state_dict"]["backbone.time_embedder.0.W"])


def test_load_drakes_state_dict_errors_name_the_problem():
    ckpt = synthetic_drakes_checkpoint(16, 4)
    wrong_width = DilatedCNN(**{**drakes_config(), "hidden_dim": 32})
    with pytest.raises(ValueError, match="wrong architecture.*linear.weight"):
        load_drakes_state_dict(wrong_width, ckpt)
    missing = dict(ckpt["state_dict"])
    del missing["backbone.norms.3.bias"]
    net = DilatedCNN(**{**drakes_config(), "hidden_dim": 16})
    with pytest.raises(ValueError, match="norms.3.bias"):
        load_drakes_state_dict(net, {"state_dict": missing})
    short_ema = {**ckpt, "ema": {"shadow_params": ckpt["ema"]["shadow_params"][:-1]}}
    with pytest.raises(ValueError, match="EMA holds"):
        load_drakes_state_dict(net, short_ema)
