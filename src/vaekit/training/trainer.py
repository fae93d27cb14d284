"""The one training loop: Adam, LR schedule, epochs or steps, validation, early stopping, best/last
checkpoints, a NaN/inf guard, metrics in JSONL, and exact resume (model, optimizer, data order, RNG states).

The dataset is one in-memory tensor; batches are taken with ``index_select`` over a seeded permutation, so the
hot path has no per-item Python work.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vaekit.config import TrainConfig
from vaekit.utils import atomic_write_text, eval_mode
from vaekit.training.checkpoint import load_checkpoint, pack_optimizer, save_checkpoint, unpack_optimizer
from vaekit.training.ema import WeightAverage
from vaekit.training.perf import AdamStep, GradSums, flush_denormals, make_adam, tune_malloc

__all__ = ["Trainer", "TrainingError", "TrainState"]

log = logging.getLogger("vaekit.train")

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many non-finite steps in a row)."""


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs (saved in the checkpoint's JSON document)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0                  # index of the next batch within the epoch
    best_val: float = -math.inf     # best validation ELBO (nats, higher is better)
    best_step: int = 0
    stale_vals: int = 0             # validations since the best one
    bad_in_row: int = 0
    bad_total: int = 0
    stopped: str = ""               # why the run ended early ("" while running)
    elapsed: float = 0.0            # training seconds before the current process (for time budgets)
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Train ``model`` with ``objective`` on ``train_x``; validate on ``val_x``; write into ``run_dir``.

    objective(model, x, step=, check=False) -> ObjectiveResult. ``transform(x, generator)`` is applied to each
    batch (dynamic binarisation, dequantisation). ``callbacks`` are called as cb(trainer, record) after each
    step (tests use one to kill a run).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Callable[..., Any],
        train_x: torch.Tensor,
        val_x: torch.Tensor | None,
        *,
        settings: TrainConfig,
        run_dir: str | Path,
        seed: int = 0,
        transform: Transform | None = None,
        doc: dict[str, Any] | None = None,
        callbacks: list[Callable[["Trainer", dict], None]] | None = None,
    ) -> None:
        self.model, self.objective, self.s = model, objective, settings
        self.train_x = train_x
        self.run_dir = Path(run_dir)
        self.seed, self.transform = int(seed), transform
        self.doc = dict(doc or {})
        self.callbacks = list(callbacks or [])
        if settings.batch_size < 1:
            raise ValueError("train.batch_size must be at least 1")
        self.n = train_x.shape[0]
        if self.n == 0:
            raise ValueError("the training split is empty")
        self.batch_size = min(settings.batch_size, self.n)
        self.steps_per_epoch = math.ceil(self.n / self.batch_size)
        self.total_steps = settings.steps if settings.steps is not None else settings.epochs * self.steps_per_epoch
        self.val_every = settings.val_every or self.steps_per_epoch
        self.ckpt_every = settings.checkpoint_every or self.val_every
        self.opt = make_adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                             fused=settings.fused_adam)
        self.opt_step = AdamStep(self.opt)  # opt.step() without its per-call Python bookkeeping
        self.ema = WeightAverage(model, settings.ema_decay) if settings.ema_decay else None
        self.state = TrainState()
        self.data_gen = torch.Generator().manual_seed(self.seed)
        self.aug_gen = torch.Generator().manual_seed(self.seed + 1)
        self.perm: torch.Tensor | None = None
        # a fixed (seeded) transform of the validation set so its ELBO is comparable across validations
        self.val_x = val_x
        if val_x is not None and transform is not None:
            self.val_x = transform(val_x, torch.Generator().manual_seed(self.seed + 2))

    # -- schedule ------------------------------------------------------------------------------------------
    def progress(self, step: int, elapsed: float | None = None) -> float:
        """Fraction of the budget used: steps, or wall time when ``train.time_limit`` ends the run sooner."""
        frac = min(step, self.total_steps) / max(1, self.total_steps)
        if self.s.time_limit and elapsed is not None:
            frac = max(frac, min(1.0, elapsed / self.s.time_limit))
        return frac

    def lr_at(self, step: int, elapsed: float | None = None) -> float:
        """Learning rate: constant, cosine over the budget (Loshchilov & Hutter 2017), or exponential per epoch.

        With a time limit the cosine follows whichever runs out first, steps or time, so a budgeted run ends
        with a decayed learning rate whatever the machine's speed.
        """
        s = self.s
        if s.lr_schedule == "constant":
            return s.lr
        if s.lr_schedule == "cosine":
            return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1 + math.cos(math.pi * self.progress(step, elapsed)))
        if s.lr_schedule == "exponential":
            return max(s.min_lr, s.lr * s.lr_decay ** (step / self.steps_per_epoch))
        raise ValueError(f"unknown train.lr_schedule {s.lr_schedule!r}; choose constant, cosine or exponential")

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _tensors(self, name: str) -> dict[str, torch.Tensor]:
        # 'model.*' are the weights a loaded run uses: the averaged ones in 'best' when averaging is on
        use = self.ema.sync_buffers() if self.ema is not None and name == "best" else self.model
        t = {f"model.{k}": v for k, v in use.state_dict().items()}
        if self.ema is not None and name != "best":  # 'last' keeps both, for an exact resume
            t.update({f"ema.{k}": v for k, v in self.ema.model.state_dict().items()})
        opt_t, self._opt_meta = pack_optimizer(self.opt)
        t.update(opt_t)
        t["rng.torch"] = torch.get_rng_state()
        t["rng.data"] = self.data_gen.get_state()
        t["rng.aug"] = self.aug_gen.get_state()
        if self.perm is not None:
            t["data.perm"] = self.perm
        return t

    def save(self, name: str, metrics: dict[str, Any] | None = None) -> Path:
        path = self.run_dir / f"{name}.safetensors"
        tensors = self._tensors(name)
        doc = {**self.doc, "kind": name, "step": self.state.step, "metrics": metrics or {},
               "trainer": self.state.__dict__, "optimizer": self._opt_meta}
        save_checkpoint(path, tensors, doc)
        return path

    def restore(self, path: str | Path) -> None:
        """Restore model, optimizer, data order, RNG states and trainer state from a checkpoint."""
        tensors, doc = load_checkpoint(path)
        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_sd)
        if self.ema is not None:
            ema_sd = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            if not ema_sd:
                raise ValueError(f"{path} was saved without train.ema_decay; resume with train.ema_decay=null")
            self.ema.model.load_state_dict(ema_sd)
        unpack_optimizer(self.opt, tensors, doc["optimizer"])
        torch.set_rng_state(tensors["rng.torch"])
        self.data_gen.set_state(tensors["rng.data"])
        self.aug_gen.set_state(tensors["rng.aug"])
        self.perm = tensors.get("data.perm")
        known = TrainState.__dataclass_fields__  # keys a newer vaekit may add are ignored
        self.state = TrainState(**{k: v for k, v in doc["trainer"].items() if k in known})
        self._truncate_metrics(self.state.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop records after ``step`` (and a line cut short by a kill), rewriting the file atomically."""
        path = self.run_dir / "metrics.jsonl"
        if path.exists():
            keep = []
            for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    if json.loads(ln).get("step", 0) <= step:
                        keep.append(ln)
                except (ValueError, AttributeError):
                    continue
            atomic_write_text(path, "".join(ln + "\n" for ln in keep))

    # -- validation ----------------------------------------------------------------------------------------
    def _has_val(self) -> bool:
        return self.val_x is not None and self.val_x.shape[0] > 0

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean ELBO, log p(x|z) and KL on the validation set (RNG forked: training draws are unaffected)."""
        if not self._has_val():
            return {}
        model = self.ema.sync_buffers() if self.ema is not None else self.model
        tot = {"elbo": 0.0, "rec": 0.0, "kl": 0.0}
        kl_dims = 0.0
        with eval_mode(model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 3)
            for i in range(0, self.val_x.shape[0], 1000):
                xb = self.val_x[i:i + 1000]
                t = model.elbo_terms(xb, 1, check=False)
                tot["elbo"] += float((t.log_px_z - t.kl).sum())
                tot["rec"] += float(-t.log_px_z.sum())
                tot["kl"] += float(t.kl.sum())
                kl_dims = kl_dims + t.kl_groups.sum(0)  # (G,) KL per latent dimension (or group)
        n = self.val_x.shape[0]
        out = {f"val_{k}": v / n for k, v in tot.items()}
        out["val_kl_dims"] = [round(float(v) / n, 5) for v in kl_dims]  # for the KL-over-training heat map
        return out

    # -- the loop ------------------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def fit(self) -> dict[str, Any]:
        """Train until the step budget, early stopping, the time limit or too many bad steps; return a summary."""
        s, st = self.s, self.state
        if s.threads:
            torch.set_num_threads(s.threads)
        if s.malloc_tuning:
            tune_malloc()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt_params = [p for g in self.opt.param_groups for p in g["params"]]
        show = s.progress and sys.stderr.isatty()
        pbar = None
        if show:
            from tqdm import tqdm

            pbar = tqdm(total=self.total_steps, initial=st.step, unit="step", dynamic_ncols=True, leave=True)
        t0, base = time.perf_counter(), st.elapsed  # base: training seconds of earlier processes
        acc = {"loss": 0.0, "rec": 0.0, "kl": 0.0, "n": 0}
        t_last, last_val = t0, {}
        constant_lr = s.lr_schedule == "constant"
        self.model.train()
        with flush_denormals(), GradSums(params if not s.grad_clip else []) as grad_sums:
            while st.step < self.total_steps and not st.stopped:
                if st.batch == 0 or self.perm is None:
                    self.perm = torch.randperm(self.n, generator=self.data_gen)
                idx = self.perm[st.batch * self.batch_size:(st.batch + 1) * self.batch_size]
                xb = self.train_x.index_select(0, idx)
                if self.transform is not None:
                    xb = self.transform(xb, self.aug_gen)
                if not constant_lr:
                    lr = self.lr_at(st.step, base + time.perf_counter() - t0)
                    for g in self.opt.param_groups:
                        g["lr"] = lr
                res = self.objective(self.model, xb, step=st.step, check=False)
                for p in opt_params:  # opt.zero_grad(set_to_none=True) without its per-call bookkeeping
                    p.grad = None
                res.loss.backward()
                if s.grad_clip:
                    check = torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                else:  # any NaN/inf gradient element makes this sum non-finite (taken during the backward pass)
                    check = grad_sums.total()
                loss_t = res.loss.detach()
                loss, ok = float(loss_t), math.isfinite(float(loss_t + check))  # one pass, two reads
                if ok:
                    self.opt_step()
                    if self.ema is not None:
                        self.ema.update(st.step)
                    st.bad_in_row = 0
                    acc["loss"] += loss
                    rec_m, kl_m = res.means or (res.log_px_z.detach().mean(), res.kl.detach().mean())
                    acc["rec"] += rec_m  # tensors: read once per record, not per step
                    acc["kl"] += kl_m
                    acc["n"] += 1
                else:
                    st.bad_in_row += 1
                    st.bad_total += 1
                    log.warning("non-finite loss or gradient at step %d: step skipped (%d in a row)", st.step, st.bad_in_row)
                    if st.bad_in_row >= s.max_bad_steps:
                        st.stopped = "non-finite"
                st.step += 1
                st.batch += 1
                if st.batch >= self.steps_per_epoch:
                    st.batch, st.epoch = 0, st.epoch + 1
                if pbar is not None:
                    pbar.update(1)
                end = st.step >= self.total_steps or bool(st.stopped)
                st.elapsed = base + time.perf_counter() - t0
                if s.time_limit is not None and st.elapsed >= s.time_limit:
                    st.stopped, end = "time limit", True
                if st.step % self.val_every == 0 or end:
                    now = time.perf_counter()
                    n = max(acc["n"], 1)
                    record = {"step": st.step, "epoch": st.epoch, "loss": acc["loss"] / n,
                              "rec": -float(acc["rec"]) / n, "kl": float(acc["kl"]) / n, "beta": res.beta,
                              "lr": self.opt.param_groups[0]["lr"], "bad_steps": st.bad_total,
                              "samples_per_s": acc["n"] * self.batch_size / max(now - t_last, 1e-9),
                              "time": base + now - t0}
                    sigma = getattr(getattr(self.model, "likelihood", None), "sigma", None)
                    if isinstance(sigma, (float, torch.Tensor)):
                        record["sigma"] = float(sigma)
                    last_val = self.validate()
                    record.update(last_val)
                    self._log(record)
                    self._after_validation(last_val)
                    if pbar is not None:
                        pbar.set_postfix(loss=f"{record['loss']:.2f}", rec=f"{record['rec']:.2f}",
                                         kl=f"{record['kl']:.2f}", **({"val": f"{last_val['val_elbo']:.2f}"} if last_val else {}))
                    else:
                        log.info("step %d/%d  loss %.3f  rec %.3f  kl %.3f%s", st.step, self.total_steps,
                                 record["loss"], record["rec"], record["kl"],
                                 f"  val elbo {last_val['val_elbo']:.3f}" if last_val else "")
                    acc = {"loss": 0.0, "rec": 0.0, "kl": 0.0, "n": 0}
                    t_last = time.perf_counter()
                if st.step % self.ckpt_every == 0 or end:
                    self.save("last", last_val)
                for cb in self.callbacks:
                    cb(self, {"step": st.step, "loss": loss})
        if pbar is not None:
            pbar.close()
        if self.ema is not None and not self._has_val():  # no validation to pick one: the average is 'best'
            self.save("best", last_val)
        if st.stopped == "non-finite":
            raise TrainingError(
                f"stopped at step {st.step}: {st.bad_in_row} non-finite losses or gradients in a row; "
                f"lower train.lr, set train.grad_clip, or check the data for extreme values"
            )
        return {"steps": st.step, "epochs": st.epoch, "best_val_elbo": st.best_val, "best_step": st.best_step,
                "bad_steps": st.bad_total, "stopped": st.stopped or "completed", "train_seconds": time.perf_counter() - t0}

    def _after_validation(self, val: dict[str, float]) -> None:
        st = self.state
        if not val:  # no validation data: the latest weights are the best we know ('last' holds them)
            st.best_step = st.step
            return
        if val["val_elbo"] > st.best_val:
            st.best_val, st.best_step, st.stale_vals = val["val_elbo"], st.step, 0
            self.save("best", val)
        else:
            st.stale_vals += 1
            if self.s.patience is not None and st.stale_vals >= self.s.patience:
                st.stopped = "early stopping"
                log.info("early stopping at step %d (best val ELBO %.3f at step %d)", st.step, st.best_val, st.best_step)
