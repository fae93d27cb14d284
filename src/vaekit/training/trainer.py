"""The one training loop: Adam, LR schedule, epochs or steps, validation, early stopping, best/last
checkpoints, a NaN/inf guard, metrics in JSONL, and exact resume (model, optimizer, data order, RNG states).

The trainer knows no model: it calls the objective (``vaekit.objectives.Objective``) on a batch and logs what the
objective's result and the model's ``extra_stats()`` report; what an objective adds (its own parameters and
optimizers, an auxiliary step, validation metrics, the metric that picks 'best') comes through the hooks the
``Objective`` base class declares. ``train_step(batch) -> stats`` is one optimisation step; ``fit`` loops over
it and tells the callbacks (``vaekit.training.events``). The dataset is one in-memory tensor; batches are taken
with ``index_select`` over a seeded permutation (a generator on the data's device), so the hot path has no
per-item Python work. What a checkpoint holds besides the weights is packed by ``vaekit.training.state``.

Process-wide state is left as it was found: the thread count is restored after ``fit``, and the model's noise is
drawn from the trainer's own RNG stream (the caller's global RNG is forked around ``fit``; the stream is saved in
checkpoints).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vaekit.config import TrainConfig
from vaekit.evaluation.metrics import per_example_terms
from vaekit.objectives import Objective, ObjectiveResult
from vaekit.progress import progress_bar
from vaekit.training.checkpoint import load_checkpoint, save_checkpoint
from vaekit.training.distributed import DistInfo, all_reduce_sum, shard
from vaekit.training.ema import WeightAverage
from vaekit.training.events import Callback, CallbackLike
from vaekit.training.perf import AdamStep, GradSums, make_adam
from vaekit.training.records import StepSums, append_record, truncate_records
from vaekit.training.state import NoiseStream, TrainState, pack_optimizers, pack_rng, unpack_optimizers, unpack_rng
from vaekit.utils import eval_mode

__all__ = ["Trainer", "TrainingError", "TrainState"]

log = logging.getLogger("vaekit.train")

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many non-finite steps in a row)."""


def _precision_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """train.precision -> the autocast dtype (None for fp32); a clear error where the device cannot do it."""
    if precision == "fp32":
        return None
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"unknown train.precision {precision!r}; choose fp32, bf16 or fp16")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("train.precision=fp16 needs a GPU (CPU autocast has no fp16 GradScaler path); use "
                         "train.precision=bf16 on CPU or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


class _FunctionObjective(Objective):
    """A plain function fn(model, x, step=, check=) -> ObjectiveResult, with the base class's hooks."""

    def __init__(self, fn: Callable[..., ObjectiveResult]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, model: nn.Module, x: torch.Tensor, step: int | None = None,
                check: bool = True) -> ObjectiveResult:
        return self.fn(model, x, step=step, check=check)


def _as_objective(objective: Objective | Callable[..., ObjectiveResult]) -> Objective:
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, nn.Module):  # its parameters and state would be silently left out
        raise TypeError(f"the objective {type(objective).__name__} is an nn.Module but not a "
                        "vaekit.objectives.Objective; derive it from Objective (its hooks say what the trainer "
                        "trains and saves)")
    return _FunctionObjective(objective)


class Trainer:
    """Train ``model`` with ``objective`` on ``train_x``; validate on ``val_x``; write into ``run_dir``.

    ``train_x``: a tensor on the model's device, or a ``vaekit.data.rows.Rows`` (uint8 in memory, memory-mapped,
    streamed files) that hands out float32 batches there; the batch order is the same either way.

    objective(model, x, step=, check=False) -> ObjectiveResult: an ``Objective`` (its ``joint_parameters()``
    join the optimizer as a group of their own, its ``optimizers()`` are checkpointed, its ``auxiliary_step``
    runs after each main step, its ``validation_metrics`` join each validation and its ``selection`` picks
    'best'), or a plain function (the base class's hooks). ``transform(x, generator)`` is applied to each batch
    (dynamic binarisation, dequantisation). ``callbacks``: ``events.Callback`` objects or functions
    fn(trainer, {"step", "loss"}) called after each step (tests use one to kill a run). ``run_dir=None`` trains
    in memory (no metrics file, no checkpoints).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective | Callable[..., ObjectiveResult],
        train_x: Any,
        val_x: torch.Tensor | None,
        *,
        settings: TrainConfig,
        run_dir: str | Path | None,
        seed: int = 0,
        transform: Transform | None = None,
        doc: dict[str, Any] | None = None,
        callbacks: list[CallbackLike] | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.model, self.objective, self.s = model, _as_objective(objective), settings
        self.train_x = train_x
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.seed, self.transform = int(seed), transform
        self.doc = dict(doc or {})
        self.callbacks = list(callbacks or [])
        self.dist = dist_info or DistInfo()
        if settings.batch_size < 1:
            raise ValueError("train.batch_size must be at least 1")
        self.n = train_x.shape[0]
        if self.n == 0:
            raise ValueError("the training split is empty")
        self.device = train_x.device
        self.batch_size = min(settings.batch_size, self.n)
        self.steps_per_epoch = math.ceil(self.n / self.batch_size)
        self.total_steps = settings.steps if settings.steps is not None else settings.epochs * self.steps_per_epoch
        self.val_every = settings.val_every or self.steps_per_epoch
        self.ckpt_every = settings.checkpoint_every or self.val_every
        trainable = [p for p in model.parameters() if p.requires_grad]  # frozen parts (M1 inside M1+M2) stay out
        self.opt = make_adam(trainable, lr=settings.lr, weight_decay=settings.weight_decay,
                             fused=settings.fused_adam, betas=tuple(settings.betas))
        joint = self.objective.joint_parameters()
        if joint:  # an objective's own trainable parameters (e.g. a learned prior's), trained jointly
            self.opt.add_param_group({"params": joint})
        self.aux_opts: dict[str, torch.optim.Optimizer] = dict(self.objective.optimizers())
        self.ema = WeightAverage(model, settings.ema_decay) if settings.ema_decay else None
        self.state = TrainState()
        self.module = model  # what the objective calls: the model, or its DDP wrapper on several processes
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            self.module = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                                  else None)
        self.data_gen = torch.Generator(device=self.device).manual_seed(self.seed)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        # every rank its own noise stream (rank 0 = a single process)
        self.noise = NoiseStream(self.device, self.seed + 6 + 7919 * self.dist.rank)
        self.perm: torch.Tensor | None = None
        self._planned: tuple[int, int] | None = None  # (epoch, batch) a streaming source expects next
        self._params = [p for g in self.opt.param_groups for p in g["params"]]
        self._adam_step = AdamStep(self.opt)  # opt.step() with less per-step Python work, the same numbers
        self._loss_fn = self._objective_call
        self._penalty = getattr(self.model, "training_penalty", None)  # the contract's optional weight regulariser
        self.autocast_dtype = _precision_dtype(settings.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None
        if settings.compile:  # opt-in: torch.compile of the objective's forward (model + bound) for this model
            self._loss_fn = torch.compile(self._objective_call)
        # a fixed (seeded) transform of the validation set so its ELBO is comparable across validations
        self.val_x = val_x
        if val_x is not None and transform is not None:
            self.val_x = transform(val_x, torch.Generator(device=val_x.device).manual_seed(self.seed + 2))

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
    def _tensors(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON entries) of a checkpoint: weights, objective state, optimizers, RNG streams."""
        # 'model.*' are the weights a loaded run uses: the averaged ones in 'best' when averaging is on
        use = self.ema.sync_buffers() if self.ema is not None and name == "best" else self.model
        t = {f"model.{k}": v for k, v in use.state_dict().items()}
        if self.ema is not None and name != "best":  # 'last' keeps both, for an exact resume
            t.update({f"ema.{k}": v for k, v in self.ema.model.state_dict().items()})
        t.update({f"objective.{k}": v for k, v in self.objective.state_dict().items()})
        opt_t, meta = pack_optimizers(self.opt, self.aux_opts)
        t.update(opt_t)
        t.update(pack_rng(self._all_noise_states(), self.data_gen, self.aug_gen, self.perm))
        return t, meta

    def _all_noise_states(self) -> list[dict[str, torch.Tensor]]:
        """Every rank's noise stream (a collective on several processes: all ranks call ``save`` together)."""
        own = self.noise.state()
        if not self.dist.active:
            return [own]
        import torch.distributed as tdist

        states: list = [None] * self.dist.world
        tdist.all_gather_object(states, {k: v.cpu() for k, v in own.items()})
        return states

    def save(self, name: str, metrics: dict[str, Any] | None = None) -> Path | None:
        """Write checkpoint ``name`` ('last' or 'best') into the run folder (rank 0; every rank must call it)."""
        if self.run_dir is None:
            return None
        tensors, meta = self._tensors(name)  # on several processes every rank joins the gather of noise states
        if not self.dist.is_main:
            return None
        path = self.run_dir / f"{name}.safetensors"
        doc = {**self.doc, "kind": name, "step": self.state.step, "metrics": metrics or {},
               "trainer": self.state.__dict__, **meta, "world_size": self.dist.world}
        save_checkpoint(path, tensors, doc)
        return path

    def restore(self, path: str | Path) -> None:
        """Restore model, optimizer, data order, RNG states and trainer state from a checkpoint (written on any
        device: see ``vaekit.training.state`` for RNG states of another kind of device)."""
        tensors, doc = load_checkpoint(path)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if self.ema is not None:
            ema_sd = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            if not ema_sd:
                raise ValueError(f"{path} was saved without train.ema_decay; resume with train.ema_decay=null")
            self.ema.model.load_state_dict(ema_sd)
        self.objective.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("objective.")})
        unpack_optimizers(self.opt, self.aux_opts, tensors, doc)
        world = int(doc.get("world_size", 1))
        if world != self.dist.world:
            raise ValueError(f"{path} was trained with {world} process(es) and this resume has {self.dist.world}; "
                             f"resume with the same number (torchrun --nproc_per_node={world}) for an exact "
                             f"continuation")
        perm = unpack_rng(tensors, self.dist.rank, self.noise, self.data_gen, self.aug_gen, source=str(path))
        self.perm = perm.to(self.device) if perm is not None else None
        self.state = TrainState.from_doc(doc["trainer"])
        self._truncate_metrics(self.state.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop records after ``step`` (rank 0 only: another rank's rewrite raced rank 0's removal of stale
        temporary files when it took over the lock)."""
        if self.run_dir is not None and self.dist.is_main:
            truncate_records(self.run_dir, step)

    # -- validation ----------------------------------------------------------------------------------------
    def _has_val(self) -> bool:
        return self.val_x is not None and self.val_x.shape[0] > 0

    def validate(self) -> dict[str, float]:
        """Mean ELBO, log p(x|z) and KL on the validation set, the KL per latent unit, and the objective's
        ``validation_metrics`` (a private RNG stream: training draws are unaffected)."""
        if not self._has_val():
            return {}
        model = self.ema.sync_buffers() if self.ema is not None else self.model
        t = per_example_terms(model, self.val_x, batch_size=1000, seed=self.seed + 3, check=False)
        out = {"val_elbo": float(t["elbo"].mean()), "val_rec": float(-t["log_px_z"].mean()),
               "val_kl": float(t["kl"].mean())}
        out["val_kl_dims"] = [round(float(v), 5) for v in t["kl_units"]]  # for the KL-over-training heat map
        with eval_mode(model), torch.no_grad():
            out.update(self.objective.validation_metrics(model, self.val_x))  # e.g. M2's validation accuracy
        return out

    @property
    def selection(self) -> str:
        """The validation metric (higher is better) that picks 'best': the objective's ``selection`` (M2:
        "val_accuracy"; "val_elbo" by default), or "val_elbo" at a validation that does not report it."""
        return self.objective.selection

    def _after_validation(self, val: dict[str, float]) -> None:
        st = self.state
        if not val:  # no validation data: the latest weights are the best we know ('last' holds them)
            st.best_step = st.step
            return
        key = self.selection if self.selection in val else "val_elbo"
        if val[key] > st.best_val:
            st.best_val, st.best_step, st.stale_vals = val[key], st.step, 0
            self.save("best", val)
        else:
            st.stale_vals += 1
            if self.s.patience is not None and st.stale_vals >= self.s.patience:
                st.stopped = "early stopping"
                log.info("early stopping at step %d (best %s %.3f at step %d)", st.step, key, st.best_val,
                         st.best_step)

    # -- one step ------------------------------------------------------------------------------------------
    def _objective_call(self, xb: torch.Tensor, step: int) -> ObjectiveResult:
        if self.autocast_dtype is None:
            return self.objective(self.module, xb, step=step, check=False)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):  # nets in low precision, densities fp32
            return self.objective(self.module, xb, step=step, check=False)

    def train_step(self, xb: torch.Tensor, grad_sums: GradSums | None = None) -> dict[str, Any]:
        """One optimisation step on the batch xb: objective, backward, NaN/inf guard, optimizer step (skipped when
        the loss or a gradient is not finite), weight average, the objective's auxiliary step.

        With ``train.skip_threshold`` an update whose gradient norm (before clipping) is above it is skipped
        (Child 2021, Sec. 5.2; "ok" False, "skipped" True, its "grad_norm" given).

        Returns {"loss": float, "ok": bool, "beta": float, "stats": {name: detached batch-mean tensor},
        "skipped": bool, "grad_norm": float or None}.
        ``grad_sums``: the guard's per-gradient sums taken during the backward pass (``fit`` installs them); None
        sums the gradients afterwards.
        """
        st = self.state
        res = self._loss_fn(xb, st.step)
        for p in self._params:  # opt.zero_grad(set_to_none=True), without its per-call overhead
            p.grad = None
        loss_bw = res.loss
        if self.dist.active:  # DDP averages over ranks: weight each rank by its share of the global batch
            loss_bw = loss_bw * (self.dist.world * xb.shape[0] / self._global_batch)
        penalty = self._penalty() if self._penalty is not None else None
        if penalty is not None:  # the same on every rank: DDP's average of its gradient is itself
            loss_bw = loss_bw + penalty
        if self.scaler is not None:  # fp16: scale the loss so small gradients do not underflow
            self.scaler.scale(loss_bw).backward()
            self.scaler.unscale_(self.opt)  # the guard and the clip see true gradients
        else:
            loss_bw.backward()
        norm = None
        if self.s.grad_clip or self.s.skip_threshold:  # the norm before clipping (inf: measured, not clipped)
            norm = check = torch.nn.utils.clip_grad_norm_(self._params, self.s.grad_clip or math.inf)
        elif grad_sums is not None:  # any NaN/inf gradient element makes this sum non-finite
            check = grad_sums.total()
        else:
            grads = [p.grad.sum() for p in self._params if p.grad is not None]
            check = torch.stack(grads).sum() if grads else torch.zeros(())
        loss_t = res.loss.detach()
        loss, ok = float(loss_t), math.isfinite(float(loss_t + check))  # one pass, two reads
        if self.scaler is not None:  # fp16: overflowing gradients are the scaler's to skip (it lowers its scale)
            ok = math.isfinite(loss)
        skipped = False
        if ok and self.s.skip_threshold and norm is not None and float(norm) > self.s.skip_threshold:
            ok, skipped = False, True  # update skipping (Child 2021, Sec. 5.2): a finite but outlying gradient
        if self.dist.active:  # every rank steps, or none does (the norm is of DDP's averaged gradients)
            ok = all_reduce_sum([0.0 if ok else 1.0], self.device)[0] == 0.0
        stats: dict[str, Any] = {}
        if self.scaler is not None:  # the scaler skips non-finite steps itself and adapts its scale
            if not skipped:
                self.scaler.step(self.opt)
            self.scaler.update()
        elif ok:
            self._adam_step()
        if ok:
            if self.ema is not None:
                self.ema.update(st.step)
            stats = res.stats()
            if penalty is not None:
                stats["penalty"] = penalty.detach()
            stats.update(self.objective.auxiliary_step(self.model, xb, res, st.step))
        return {"loss": loss, "ok": ok, "beta": res.beta, "stats": stats, "skipped": skipped,
                "grad_norm": float(norm) if skipped else None}

    # -- the loop ------------------------------------------------------------------------------------------
    def _next_batch(self) -> torch.Tensor:
        st = self.state
        if st.batch == 0 or self.perm is None:
            self.perm = torch.randperm(self.n, generator=self.data_gen, device=self.device)
        idx = self.perm[st.batch * self.batch_size:(st.batch + 1) * self.batch_size]
        self._global_batch = idx.shape[0]
        idx = shard(idx, self.dist)  # this rank's contiguous part of the global batch
        if isinstance(self.train_x, torch.Tensor):
            xb = self.train_x.index_select(0, idx)
        else:  # vaekit.data.rows.Rows: compact, memory-mapped or streamed examples, float32 batches
            if self._planned != (st.epoch, st.batch):  # an epoch's start, or a resume: the rest of this epoch
                b = self.batch_size
                self.train_x.plan([shard(self.perm[k * b:(k + 1) * b], self.dist)
                                   for k in range(st.batch, self.steps_per_epoch)])
            self._planned = (st.epoch, st.batch + 1)
            xb = self.train_x.take(idx, self.device)
        if self.transform is not None:
            xb = self.transform(xb, self.aug_gen)
        return xb

    def fit(self) -> dict[str, Any]:
        """Train until the step budget, early stopping, the time limit or too many bad steps; return a summary.

        The thread count (``train.threads``) and the caller's global RNG are restored afterwards."""
        threads = torch.get_num_threads()
        try:
            with self.noise.active():
                if self.s.threads:
                    torch.set_num_threads(self.s.threads)
                return self._fit()
        finally:
            torch.set_num_threads(threads)

    def _elapsed(self) -> float:
        """Training seconds so far (earlier processes' included); on several processes the mean over ranks, so
        every rank takes the same time-based learning rate and stops at the same step."""
        e = self._base + self._clock() - self._t0
        if self.dist.active and self.s.time_limit:
            e = all_reduce_sum([e], self.device)[0] / self.dist.world
        return e

    def _fit(self) -> dict[str, Any]:
        s, st = self.s, self.state
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        # train.time_clock=cpu: the budget is this process's CPU seconds (all threads), fair on a shared machine
        self._clock = time.process_time if s.time_clock == "cpu" else time.perf_counter
        self._t0, self._base = self._clock(), st.elapsed  # base: training seconds of earlier processes
        if st.stopped == "time limit" and (s.time_limit is None or st.elapsed < s.time_limit):
            st.stopped = ""  # resumed with a longer time budget (or none): train on until it runs out
        t_wall = time.perf_counter()
        sums, val = StepSums(t_wall), {}
        bar = progress_bar(self.total_steps, enabled=s.progress and self.dist.is_main, initial=st.step, unit="step")
        self.model.train()
        with GradSums(self._params if not (s.grad_clip or s.skip_threshold) else []) as grad_sums:
            while st.step < self.total_steps and not st.stopped:
                if s.lr_schedule != "constant":
                    self._set_lr(self.lr_at(st.step, self._elapsed()))
                out = self.train_step(self._next_batch(), grad_sums)
                self._count(out, sums)
                record = None
                if st.step % self.val_every == 0 or self._ending():
                    record, val = self._validation_step(sums, out["beta"], bar)
                if st.step % self.ckpt_every == 0 or self._ending():
                    self.save("last", val)
                self._emit(out["loss"], record, bar)
        if bar is not None:
            bar.close()
        for cb in self.callbacks:
            if isinstance(cb, Callback):
                cb.on_end(self)
        return self._summary(t_wall, val)

    def _set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def _ending(self) -> bool:
        return self.state.step >= self.total_steps or bool(self.state.stopped)

    def _count(self, out: dict[str, Any], sums: StepSums) -> None:
        """Advance the counters after a step: running sums or the bad-step count, step, epoch, time limit."""
        st, s = self.state, self.s
        if out["ok"]:
            st.bad_in_row = 0
            sums.add(out["loss"], out["stats"])
        else:  # a skipped update counts toward max_bad_steps too, so a too-low threshold cannot stall a run
            st.bad_in_row += 1
            if out.get("skipped"):
                st.skipped_total += 1
                log.info("gradient norm %.4g above train.skip_threshold at step %d: update skipped (%d in a row)",
                         out["grad_norm"], st.step, st.bad_in_row)
            else:
                st.bad_total += 1
                log.warning("non-finite loss or gradient at step %d: step skipped (%d in a row)", st.step,
                            st.bad_in_row)
            if st.bad_in_row >= s.max_bad_steps:
                st.stopped = "non-finite"
        st.step += 1
        st.batch += 1
        if st.batch >= self.steps_per_epoch:
            st.batch, st.epoch = 0, st.epoch + 1
        st.elapsed = self._elapsed()
        if s.time_limit is not None and st.elapsed >= s.time_limit:
            st.stopped = "time limit"

    def _validation_step(self, sums: StepSums, beta: float, bar: Any) -> tuple[dict[str, Any], dict[str, float]]:
        """The metrics record of the steps since the last one (over all ranks) and the validation: appended to
        metrics.jsonl (rank 0), 'best' kept, reported; returns (record, validation metrics)."""
        st = self.state
        record = {"step": st.step, "epoch": st.epoch, **sums.means(self.dist, self.device)}
        record.update({"beta": beta, "lr": self.opt.param_groups[0]["lr"], "bad_steps": st.bad_total,
                       "skipped_updates": st.skipped_total,
                       "samples_per_s": sums.rate(self.batch_size), "time": self._base + self._clock() - self._t0})
        record.update(self.model.extra_stats())
        val = self.validate()
        record.update(val)
        if self.run_dir is not None and self.dist.is_main:
            append_record(self.run_dir, record)
        self._after_validation(val)
        if bar is not None:
            bar.set_postfix(loss=f"{record['loss']:.2f}", rec=f"{record['rec']:.2f}", kl=f"{record['kl']:.2f}",
                            **({"val": f"{val['val_elbo']:.2f}"} if val else {}))
        else:
            log.info("%s", self._log_line(record, val))
        sums.restart()
        return record, val

    def _log_line(self, record: dict[str, Any], val: dict[str, float]) -> str:
        """"step N/T  loss ..  rec ..  kl ..": no total T under a time limit (the clock, not T, ends the run), and
        the KL weight beta while it changes (a warm-up), so a loss that rises as beta grows reads as such."""
        beta, last = record.get("beta"), getattr(self, "_logged_beta", None)
        self._logged_beta = beta
        step = f"step {record['step']}" + ("" if self.s.time_limit else f"/{self.total_steps}")
        warm = f"  beta {beta:.3g}" if isinstance(beta, float) and last is not None and beta != last else ""
        return (f"{step}  loss {record['loss']:.3f}  rec {record['rec']:.3f}  kl {record['kl']:.3f}{warm}"
                + (f"  val elbo {val['val_elbo']:.3f}" if val else ""))

    def _emit(self, loss: float, record: dict[str, Any] | None, bar: Any) -> None:
        """The step's events (``vaekit.training.events``), after its record and checkpoints are written."""
        if bar is not None:
            bar.update(1)
        step = self.state.step
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                cb(self, {"step": step, "loss": loss})
                continue
            cb.on_step(self, {"step": step, "loss": loss})
            if record is not None:
                cb.on_validation(self, record)

    def _summary(self, t_wall: float, val: dict[str, float]) -> dict[str, Any]:
        st = self.state
        if self.ema is not None and not self._has_val():  # no validation to pick one: the average is 'best'
            self.save("best", val)
        if st.stopped == "non-finite":
            raise TrainingError(
                f"stopped at step {st.step}: {st.bad_in_row} non-finite losses or gradients (or updates skipped "
                f"above train.skip_threshold) in a row; lower train.lr, set train.grad_clip, raise "
                f"train.skip_threshold, or check the data for extreme values"
            )
        best = {"best_val_elbo": st.best_val} if self.selection == "val_elbo" else {
            "best_val_elbo": None, f"best_{self.selection}": st.best_val}
        return {"steps": st.step, "epochs": st.epoch, **best, "best_step": st.best_step, "bad_steps": st.bad_total,
                "skipped_updates": st.skipped_total, "stopped": st.stopped or "completed",
                "train_seconds": time.perf_counter() - t_wall,
                **({"train_cpu_seconds": st.elapsed} if self.s.time_clock == "cpu" else {})}
