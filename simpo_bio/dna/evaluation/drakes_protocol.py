"""The DRAKES evaluation protocol: the paper's metrics of a set of designs and its table.

Moved out of the former ``drakes`` module by concern (data / models / evaluation).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from simpo_bio.diffusion.masked import MaskedDiffusion
from simpo_bio.dna.data.alphabet import decode, encode
from simpo_bio.dna.data.tables import default_cache_dir
from simpo_bio.dna.evaluation.metrics import MotifScanner, kmer_frequencies, pearson
from simpo_bio.dna.models.drakes import drakes_sample
from simpo_bio.fileio import atomic_write

__all__ = ['TASKS', 'PAPER_RESULTS', 'drakes_log_likelihood', 'top_hepg2_reference', 'jaspar2022_scanner', 'DrakesProtocol', 'drakes_table', 'build_protocol', 'DrakesEvaluation']


TASKS = ("hepg2", "k562", "sknsh")


#: Reported in the DRAKES paper: Pred-Activity / ATAC-Acc / 3-mer / JASPAR / App-Log-Lik.
PAPER_RESULTS = {"Pretrained": (0.17, 0.015, -0.061, 0.249, -261.0), "DRAKES": (5.61, 0.925, 0.887, 0.911, -264.0),
                 "DRAKES w/o KL": (6.44, 0.825, 0.307, 0.557, -281.0)}


# ------------------------------------------------------------------------------------------- protocol
@torch.no_grad()
def drakes_log_likelihood(model: MaskedDiffusion, x0: Tensor, *, num_steps: int = 128, eps: float = 1e-5,
                          batch_size: int = 128, generator: torch.Generator | None = None) -> Tensor:
    """DRAKES' likelihood of each sequence (``Diffusion.get_likelihood``, ``n_samples=1``): ``[B]`` nats.

    On the grid ``t_i`` from 1 to ``eps`` (``num_steps`` steps) it draws ``x_t ~ q(x_t | x0)`` once per step and sums
    ``(m(t_i) - m(t_i - dt)) / m(t_i) * log p_theta(x0^l | x_t)`` over steps and positions (a discretised ELBO;
    unmasked positions contribute 0). ``generator`` must live on the model's device.
    """
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    grid = torch.linspace(1.0, eps, num_steps + 1, device=dev)
    dt = (1.0 - eps) / num_steps
    out = []
    for s in range(0, x0.shape[0], batch_size):
        x = x0[s:s + batch_size].to(dev).long()
        total = torch.zeros(x.shape[0], device=dev)
        for i in range(num_steps):
            t = grid[i].expand(x.shape[0])
            move_t, move_s = model.schedule.move_chance(t), model.schedule.move_chance(t - dt)
            u = torch.rand(x.shape, generator=generator, device=dev)
            xt = torch.where(u < move_t[:, None], torch.full_like(x, model.mask_index), x)
            logp = model(xt, model.schedule.sigma(t)).gather(-1, x[..., None]).squeeze(-1)
            total += (logp * ((move_t - move_s) / move_t)[:, None]).sum(-1)
        out.append(total.cpu())
    model.train(was_training)
    return torch.cat(out)


def top_hepg2_reference(gosai_csv: str | os.PathLike, quantile: float = 0.999) -> Tensor:
    """Tokens ``[R, 200]`` of the ``gosai_all.csv`` rows with ``hepg2`` above its ``quantile`` (DRAKES
    ``oracle.cal_highexp_kmers``: ``np.quantile`` over the whole table, strict ``>``)."""
    df = pd.read_csv(gosai_csv, usecols=["seq", "hepg2"])
    keep = df["hepg2"].to_numpy() > np.quantile(df["hepg2"].to_numpy(), quantile)
    return encode(df["seq"][keep].str.upper().tolist())


def jaspar2022_scanner(max_motifs: int | None = None, p_value: float = 1e-3) -> MotifScanner:
    """JASPAR 2022 CORE (all taxa, latest versions = non-redundant; pyjaspar, offline) with score thresholds at
    ``p_value`` under a uniform background; cached in the data cache like :meth:`MotifScanner.jaspar`."""
    path = default_cache_dir() / f"motifs-drakes-JASPAR2022-CORE-{p_value:g}-{max_motifs}.pt"
    if path.exists():
        d = torch.load(path, weights_only=True)
        return MotifScanner(d["names"], d["weight"], d["width"], d["threshold"])
    from pyjaspar import jaspardb

    motifs = jaspardb(release="JASPAR2022").fetch_motifs(collection="CORE")
    scanner = MotifScanner.from_motifs(motifs[:max_motifs] if max_motifs else motifs, fpr=p_value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        torch.save({"names": scanner.names, "weight": scanner.weight, "width": scanner.width,
                    "threshold": scanner.threshold}, fh)
    return scanner


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    keep = (a > 0) & (b > 0)  # pandas' pairwise-complete corr over value_counts columns (eval.ipynb)
    if keep.sum() < 3:
        return float("nan")
    return pearson(pd.Series(a[keep]).rank().to_numpy(), pd.Series(b[keep]).rank().to_numpy())


@dataclass
class DrakesProtocol:
    """The DRAKES evaluation of a set of designs (module docstring).

    Args:
        eval_oracle: callable ``tokens [B, L] -> [B]`` HepG2 prediction (the gReLU ``reward_oracle_eval.ckpt``).
        reference_tokens: ``[R, L]`` top-0.1% HepG2 sequences (:func:`top_hepg2_reference`).
        atac_oracle: callable ``tokens -> [B]`` accessibility probability (ATAC classifier, column 1), or None.
        pretrained: the pretrained :class:`MaskedDiffusion` (raw weights) for App-Log-Lik, or None.
        scanner: motif scanner for the JASPAR correlation (:func:`jaspar2022_scanner`), or None.
        atac_threshold, likelihood_steps, seed: 0.5, 128 and the likelihood's noise seed.
    """

    eval_oracle: Callable[[Tensor], Tensor]
    reference_tokens: Tensor
    atac_oracle: Callable[[Tensor], Tensor] | None = None
    pretrained: MaskedDiffusion | None = None
    scanner: MotifScanner | None = None
    atac_threshold: float = 0.5
    likelihood_steps: int = 128
    seed: int = 0
    _ref_kmer: Tensor | None = field(default=None, repr=False)
    _ref_motif: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.reference_tokens = torch.as_tensor(self.reference_tokens).long()
        self._ref_kmer = kmer_frequencies(self.reference_tokens, 3)
        if self.scanner is not None:
            self._ref_motif = self.scanner.count(self.reference_tokens).sum(0).numpy()

    def evaluate(self, tokens: Tensor) -> tuple[dict[str, float], pd.DataFrame]:
        """``(row, per-sequence table)`` of designs ``[B, L]``; row keys ``pred_activity_median``, ``atac_acc``,
        ``kmer3_corr``, ``jaspar_corr``, ``app_log_lik`` (median, nats) and a few companions."""
        tokens = torch.as_tensor(tokens).long().cpu()
        per = pd.DataFrame({"sequence": decode(tokens)})
        per["pred_activity"] = torch.as_tensor(self.eval_oracle(tokens)).float().cpu().numpy()
        row: dict[str, float] = {"n": int(tokens.shape[0]),
                                 "pred_activity_median": float(np.median(per["pred_activity"])),
                                 "pred_activity_mean": float(per["pred_activity"].mean())}
        if self.atac_oracle is not None:
            per["atac_prob"] = torch.as_tensor(self.atac_oracle(tokens)).float().cpu().numpy()
            row["atac_acc"] = float((per["atac_prob"] > self.atac_threshold).mean())
        freq = kmer_frequencies(tokens, 3)
        present = (freq > 0) | (self._ref_kmer > 0)  # DRAKES compare_kmer: the union of observed 3-mers
        row["kmer3_corr"] = pearson(freq[present], self._ref_kmer[present])
        if self.scanner is not None:
            row["jaspar_corr"] = _spearman(self.scanner.count(tokens).sum(0).numpy(), self._ref_motif)
        if self.pretrained is not None:
            dev = next(self.pretrained.parameters()).device
            gen = torch.Generator(device=dev).manual_seed(self.seed)
            per["log_lik"] = drakes_log_likelihood(self.pretrained, tokens, num_steps=self.likelihood_steps,
                                                   generator=gen).numpy()
            row["app_log_lik"] = float(np.median(per["log_lik"]))
        row["frac_unique"] = len(set(per["sequence"])) / len(per)
        return row, per


_COLUMNS = {"pred_activity_median": "Pred-Activity (median)", "atac_acc": "ATAC-Acc", "kmer3_corr": "3-mer Pearson",
            "jaspar_corr": "JASPAR Spearman", "app_log_lik": "App-Log-Lik (median)", "frac_unique": "Unique"}


def drakes_table(rows: Mapping[str, Mapping[str, float]], paper: bool = True) -> str:
    """Markdown table of protocol rows in DRAKES' column order; ``paper`` appends the DRAKES paper's rows."""
    cols = [c for c in _COLUMNS if any(c in r for r in rows.values())]
    lines = ["| model | " + " | ".join(_COLUMNS[c] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    all_rows = dict(rows)
    if paper:
        keys = ("pred_activity_median", "atac_acc", "kmer3_corr", "jaspar_corr", "app_log_lik")
        all_rows.update({f"{k} (DRAKES paper)": dict(zip(keys, v)) for k, v in PAPER_RESULTS.items()})
    for name, r in all_rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r.get(c, float('nan')):.3f}" for c in cols) + " |")
    return "\n".join(lines)


def build_protocol(eval_oracle: Any, gosai_csv: str | os.PathLike, *, atac_oracle: Any = None,
                   pretrained: MaskedDiffusion | None = None, jaspar: bool = True, max_motifs: int | None = None,
                   device: str | torch.device = "cpu") -> DrakesProtocol:
    """A :class:`DrakesProtocol` from oracle objects or specs (``load_oracle`` paths, loaded on ``device``) and the
    Gosai table."""
    from simpo_bio.dna.oracles.oracle import load_oracle

    def oracle(o):
        return load_oracle(str(o), device=device) if isinstance(o, str | os.PathLike) else o

    return DrakesProtocol(oracle(eval_oracle), top_hepg2_reference(gosai_csv),
                          atac_oracle=oracle(atac_oracle) if atac_oracle is not None else None,
                          pretrained=pretrained, scanner=jaspar2022_scanner(max_motifs) if jaspar else None)


class DrakesEvaluation(pl.Callback):
    """At the end of a fit (rank 0 only): the DRAKES protocol on the fine-tuned policy and the pretrained
    reference; writes ``drakes_metrics.csv``, ``drakes_metrics.md`` and ``drakes_designs.csv`` into ``out_dir``.

    Args:
        eval_oracle: the evaluation oracle spec (``reward_oracle_eval.ckpt``). atac_oracle: spec of the ATAC
        classifier column 1 (``binary_atac_cell_lines.ckpt?task=1``) or None. gosai_csv: ``gosai_all.csv``.
        num_samples, batch_size, num_steps, seed: 640, 64, 128 and the sampling seed. jaspar, max_motifs: the
        JASPAR correlation. evaluate_pretrained: evaluate the reference too. out_dir: default the log dir.
    """

    def __init__(self, eval_oracle: str, gosai_csv: str, atac_oracle: str | None = None, num_samples: int = 640,
                 batch_size: int = 64, num_steps: int = 128, seed: int = 0, jaspar: bool = True,
                 max_motifs: int | None = None, evaluate_pretrained: bool = True, out_dir: str | None = None):
        super().__init__()
        self.kw = {"eval_oracle": eval_oracle, "atac_oracle": atac_oracle, "jaspar": jaspar, "max_motifs": max_motifs}
        self.gosai_csv, self.num_samples, self.batch_size = gosai_csv, num_samples, batch_size
        self.num_steps, self.seed, self.evaluate_pretrained, self.out_dir = num_steps, seed, evaluate_pretrained, out_dir
        self.result: dict[str, Any] | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0 or trainer.interrupted:
            return
        out = Path(self.out_dir or trainer.log_dir or trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        protocol = build_protocol(gosai_csv=self.gosai_csv, pretrained=pl_module.reference, device=pl_module.device,
                                  **self.kw)
        models = {"fine-tuned": pl_module.policy}
        if self.evaluate_pretrained:
            models = {"pretrained": pl_module.reference, **models}
        rows, tables = {}, []
        for name, model in models.items():
            t0 = time.perf_counter()
            gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
            x = drakes_sample(model, self.num_samples, pl_module.hparams.seq_len, batch_size=self.batch_size,
                              num_steps=self.num_steps, generator=gen, device=pl_module.device)
            rows[name], per = protocol.evaluate(x)
            tables.append(per.assign(model=name))
            print(f"[simpo-bio] DRAKES protocol, {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        md = drakes_table(rows)
        with atomic_write(out / "drakes_metrics.md") as fh:
            fh.write(md + "\n")
        pd.DataFrame([{"model": k, **v} for k, v in rows.items()]).to_csv(out / "drakes_metrics.csv", index=False)
        pd.concat(tables).to_csv(out / "drakes_designs.csv", index=False)
        self.result = {"metrics": rows, "table": md}
        print(md, flush=True)
