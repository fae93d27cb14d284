"""The one training loop: Adam, LR schedule, epochs or steps, validation, early stopping, best/last
checkpoints, a NaN/inf guard, metrics in JSONL, and exact resume (model, optimizer, data order, RNG states).

The trainer knows no model: it calls the objective (``vaekit.objectives.Objective``) on a batch and logs what the
objective's result and the model's ``extra_stats()`` report. ``train_step(batch) -> stats`` is one optimisation
step; ``fit`` loops over it. The dataset is one in-memory tensor; batches are taken with ``index_select`` over a
seeded permutation (a generator on the data's device), so the hot path has no per-item Python work.

Process-wide state is left as it was found: the thread count is restored after ``fit``, and the model's noise is
drawn from the trainer's own RNG stream (the caller's global RNG is forked around ``fit``; the stream is saved in
checkpoints).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vaekit.config import TrainConfig
from vaekit.evaluation.metrics import per_example_terms
from vaekit.progress import progress_bar
from vaekit.training.checkpoint import load_checkpoint, pack_optimizer, save_checkpoint, unpack_optimizer
from vaekit.training.distributed import DistInfo, all_reduce_sum, shard
from vaekit.training.ema import WeightAverage
from vaekit.training.perf import GradSums, make_adam
from vaekit.utils import atomic_write_text, eval_mode

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


class Trainer:
    """Train ``model`` with ``objective`` on ``train_x``; validate on ``val_x``; write into ``run_dir``.

    objective(model, x, step=, check=False) -> ObjectiveResult (an ``Objective``: its ``parameters()`` join the
    optimizer as a group of their own, its ``optimizers()`` are checkpointed, its ``auxiliary_step`` runs after
    each main step). ``transform(x, generator)`` is applied to each batch (dynamic binarisation,
    dequantisation). ``callbacks`` are called as cb(trainer, record) after each step (tests use one to kill a
    run). ``run_dir=None`` trains in memory (no metrics file, no checkpoints).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Callable[..., Any],
        train_x: torch.Tensor,
        val_x: torch.Tensor | None,
        *,
        settings: TrainConfig,
        run_dir: str | Path | None,
        seed: int = 0,
        transform: Transform | None = None,
        doc: dict[str, Any] | None = None,
        callbacks: list[Callable[["Trainer", dict], None]] | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.model, self.objective, self.s = model, objective, settings
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
        extra = [p for p in getattr(objective, "parameters", lambda: [])() if p.requires_grad]
        if extra:  # an objective's own trainable parameters (e.g. a learned prior's), trained jointly
            self.opt.add_param_group({"params": extra})
        self.aux_opts: dict[str, torch.optim.Optimizer] = dict(getattr(objective, "optimizers", dict)())
        self.ema = WeightAverage(model, settings.ema_decay) if settings.ema_decay else None
        self.state = TrainState()
        self.module = model  # what the objective calls: the model, or its DDP wrapper on several processes
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            self.module = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                                  else None)
        self.data_gen = torch.Generator(device=self.device).manual_seed(self.seed)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        self.noise_state = self._initial_noise_state()
        self.perm: torch.Tensor | None = None
        self._in_fit = False
        self._params = [p for g in self.opt.param_groups for p in g["params"]]
        self._loss_fn = self._objective_call
        self.autocast_dtype = _precision_dtype(settings.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None
        if settings.compile:  # opt-in: torch.compile of the objective's forward (model + bound) for this model
            self._loss_fn = torch.compile(self._objective_call)
        # a fixed (seeded) transform of the validation set so its ELBO is comparable across validations
        self.val_x = val_x
        if val_x is not None and transform is not None:
            self.val_x = transform(val_x, torch.Generator(device=val_x.device).manual_seed(self.seed + 2))

    # -- RNG: the model's noise comes from the trainer's own stream ----------------------------------------
    def _cuda_index(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def _noise_seed(self) -> int:
        return self.seed + 6 + 7919 * self.dist.rank  # every rank its own stream; rank 0 = a single process

    def _initial_noise_state(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.Generator().manual_seed(self._noise_seed()).get_state()}
        idx = self._cuda_index()
        if idx is not None:
            state["cuda"] = torch.Generator(device=self.device).manual_seed(self._noise_seed()).get_state()
        return state

    def _current_noise_state(self) -> dict[str, torch.Tensor]:
        if not self._in_fit:
            return self.noise_state
        state = {"cpu": torch.get_rng_state()}
        idx = self._cuda_index()
        if idx is not None:
            state["cuda"] = torch.cuda.get_rng_state(idx)
        return state

    def _set_noise_state(self, state: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(state["cpu"])
        idx = self._cuda_index()
        if idx is not None and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], idx)

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
        if isinstance(self.objective, nn.Module):
            t.update({f"objective.{k}": v for k, v in self.objective.state_dict().items()})
        opt_t, self._opt_meta = pack_optimizer(self.opt)
        t.update(opt_t)
        self._aux_meta = {}
        for key, opt in self.aux_opts.items():
            aux_t, self._aux_meta[key] = pack_optimizer(opt)
            t.update({f"aux.{key}.{k}": v for k, v in aux_t.items()})
        for r, noise in enumerate(self._all_noise_states()):
            for dev, st in noise.items():
                t[("rng.torch" if dev == "cpu" else f"rng.{dev}") + (f".rank{r}" if r else "")] = st
        t["rng.data"] = self.data_gen.get_state()
        t["rng.aug"] = self.aug_gen.get_state()
        if self.perm is not None:
            t["data.perm"] = self.perm
        return t

    def _all_noise_states(self) -> list[dict[str, torch.Tensor]]:
        """Every rank's noise stream (a collective on several processes: all ranks call ``save`` together)."""
        own = self._current_noise_state()
        if not self.dist.active:
            return [own]
        import torch.distributed as tdist

        states: list = [None] * self.dist.world
        tdist.all_gather_object(states, {k: v.cpu() for k, v in own.items()})
        return states

    def save(self, name: str, metrics: dict[str, Any] | None = None) -> Path | None:
        if self.run_dir is None:
            return None
        if self.dist.active:
            tensors = self._tensors(name)  # every rank joins the gather of the noise states
            if not self.dist.is_main:
                return None
        path = self.run_dir / f"{name}.safetensors"
        tensors = self._tensors(name) if not self.dist.active else tensors
        doc = {**self.doc, "kind": name, "step": self.state.step, "metrics": metrics or {},
               "trainer": self.state.__dict__, "optimizer": self._opt_meta, "aux_optimizers": self._aux_meta,
               "world_size": self.dist.world}
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
        if isinstance(self.objective, nn.Module):
            self.objective.load_state_dict({k[10:]: v for k, v in tensors.items() if k.startswith("objective.")})
        unpack_optimizer(self.opt, tensors, doc["optimizer"])
        for key, opt in self.aux_opts.items():
            prefix = f"aux.{key}."
            unpack_optimizer(opt, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                             doc["aux_optimizers"][key])
        world = int(doc.get("world_size", 1))
        if world != self.dist.world:
            raise ValueError(f"{path} was trained with {world} process(es) and this resume has {self.dist.world}; "
                             f"resume with the same number (torchrun --nproc_per_node={world}) for an exact "
                             f"continuation")
        suffix = f".rank{self.dist.rank}" if self.dist.rank else ""
        self.noise_state = {"cpu": tensors["rng.torch" + suffix]}
        if "rng.cuda" + suffix in tensors and self._cuda_index() is not None:
            self.noise_state["cuda"] = tensors["rng.cuda" + suffix]
        self.data_gen.set_state(tensors["rng.data"].to(self.data_gen.get_state().device))
        self.aug_gen.set_state(tensors["rng.aug"].to(self.aug_gen.get_state().device))
        perm = tensors.get("data.perm")
        self.perm = perm.to(self.device) if perm is not None else None
        known = TrainState.__dataclass_fields__  # keys a newer vaekit may add are ignored
        self.state = TrainState(**{k: v for k, v in doc["trainer"].items() if k in known})
        self._truncate_metrics(self.state.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop records after ``step`` (and a line cut short by a kill), rewriting the file atomically (rank 0
        only: another rank's rewrite raced rank 0's removal of stale temporary files when it took over the lock)."""
        if self.run_dir is None or not self.dist.is_main:
            return
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

    def validate(self) -> dict[str, float]:
        """Mean ELBO, log p(x|z) and KL on the validation set, and the KL per latent unit (a private RNG stream:
        training draws are unaffected)."""
        if not self._has_val():
            return {}
        model = self.ema.sync_buffers() if self.ema is not None else self.model
        t = per_example_terms(model, self.val_x, batch_size=1000, seed=self.seed + 3, check=False)
        out = {"val_elbo": float(t["elbo"].mean()), "val_rec": float(-t["log_px_z"].mean()),
               "val_kl": float(t["kl"].mean())}
        out["val_kl_dims"] = [round(float(v), 5) for v in t["kl_units"]]  # for the KL-over-training heat map
        extra = getattr(self.objective, "validation_metrics", None)  # e.g. M2's validation accuracy
        if extra is not None:
            with eval_mode(model), torch.no_grad():
                out.update(extra(model, self.val_x))
        return out

    @property
    def selection(self) -> str:
        """The validation metric (higher is better) that picks 'best': the objective's ``selection`` when it
        names one and validation reports it (M2: "val_accuracy"), else "val_elbo"."""
        return getattr(self.objective, "selection", "val_elbo")

    # -- one step ------------------------------------------------------------------------------------------
    def _objective_call(self, xb: torch.Tensor, step: int):
        if self.autocast_dtype is None:
            return self.objective(self.module, xb, step=step, check=False)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):  # nets in low precision, densities fp32
            return self.objective(self.module, xb, step=step, check=False)

    def train_step(self, xb: torch.Tensor, grad_sums: GradSums | None = None) -> dict[str, Any]:
        """One optimisation step on the batch xb: objective, backward, NaN/inf guard, optimizer step (skipped when
        the loss or a gradient is not finite), weight average, the objective's auxiliary step.

        Returns {"loss": float, "ok": bool, "beta": float, "stats": {name: detached batch-mean tensor}}.
        ``grad_sums``: the guard's per-gradient sums taken during the backward pass (``fit`` installs them); None
        sums the gradients afterwards.
        """
        st = self.state
        res = self._loss_fn(xb, st.step)
        self.opt.zero_grad(set_to_none=True)
        loss_bw = res.loss
        if self.dist.active:  # DDP averages over ranks: weight each rank by its share of the global batch
            loss_bw = loss_bw * (self.dist.world * xb.shape[0] / self._global_batch)
        if self.scaler is not None:  # fp16: scale the loss so small gradients do not underflow
            self.scaler.scale(loss_bw).backward()
            self.scaler.unscale_(self.opt)  # the guard and the clip see true gradients
        else:
            loss_bw.backward()
        if self.s.grad_clip:
            check = torch.nn.utils.clip_grad_norm_(self._params, self.s.grad_clip)
        elif grad_sums is not None:  # any NaN/inf gradient element makes this sum non-finite
            check = grad_sums.total()
        else:
            grads = [p.grad.sum() for p in self._params if p.grad is not None]
            check = torch.stack(grads).sum() if grads else torch.zeros(())
        loss_t = res.loss.detach()
        loss, ok = float(loss_t), math.isfinite(float(loss_t + check))  # one pass, two reads
        if self.scaler is not None:  # fp16: overflowing gradients are the scaler's to skip (it lowers its scale)
            ok = math.isfinite(loss)
        if self.dist.active:  # every rank steps, or none does
            ok = all_reduce_sum([0.0 if ok else 1.0], self.device)[0] == 0.0
        stats: dict[str, Any] = {}
        if self.scaler is not None:  # the scaler skips non-finite steps itself and adapts its scale
            self.scaler.step(self.opt)
            self.scaler.update()
        elif ok:
            self.opt.step()
        if ok:
            if self.ema is not None:
                self.ema.update(st.step)
            stats = res.stats()
            aux = self.objective.auxiliary_step(self.model, xb, res, st.step) if self.aux_opts else {}
            stats.update(aux)
        return {"loss": loss, "ok": ok, "beta": res.beta, "stats": stats}

    # -- the loop ------------------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _next_batch(self) -> torch.Tensor:
        st = self.state
        if st.batch == 0 or self.perm is None:
            self.perm = torch.randperm(self.n, generator=self.data_gen, device=self.device)
        idx = self.perm[st.batch * self.batch_size:(st.batch + 1) * self.batch_size]
        self._global_batch = idx.shape[0]
        idx = shard(idx, self.dist)  # this rank's contiguous part of the global batch
        xb = self.train_x.index_select(0, idx)
        if self.transform is not None:
            xb = self.transform(xb, self.aug_gen)
        return xb

    def fit(self) -> dict[str, Any]:
        """Train until the step budget, early stopping, the time limit or too many bad steps; return a summary.

        The thread count (``train.threads``) and the caller's global RNG are restored afterwards."""
        threads = torch.get_num_threads()
        idx = self._cuda_index()
        try:
            with torch.random.fork_rng(devices=[idx] if idx is not None else []):
                self._set_noise_state(self.noise_state)
                self._in_fit = True
                try:
                    if self.s.threads:
                        torch.set_num_threads(self.s.threads)
                    return self._fit()
                finally:
                    self.noise_state = self._current_noise_state()
                    self._in_fit = False
        finally:
            torch.set_num_threads(threads)

    def _elapsed(self, base: float, t0: float) -> float:
        """Training seconds so far; on several processes the mean over ranks, so every rank takes the same
        time-based learning rate and stops at the same step."""
        e = base + self._clock() - t0
        if self.dist.active and self.s.time_limit:
            e = all_reduce_sum([e], self.device)[0] / self.dist.world
        return e

    def _fit(self) -> dict[str, Any]:
        s, st = self.s, self.state
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        pbar = progress_bar(self.total_steps, enabled=s.progress and self.dist.is_main, initial=st.step,
                            unit="step")  # tqdm.auto or None
        # train.time_clock=cpu: the budget is this process's CPU seconds (all threads), fair on a shared machine
        self._clock = time.process_time if s.time_clock == "cpu" else time.perf_counter
        t0, base = self._clock(), st.elapsed  # base: training seconds of earlier processes
        if st.stopped == "time limit" and (s.time_limit is None or st.elapsed < s.time_limit):
            st.stopped = ""  # resumed with a longer time budget (or none): train on until it runs out
        t_wall = time.perf_counter()
        acc: dict[str, Any] = {"loss": 0.0, "n": 0}
        t_last, last_val, beta = t_wall, {}, 1.0
        constant_lr = s.lr_schedule == "constant"
        self.model.train()
        with GradSums(self._params if not s.grad_clip else []) as grad_sums:
            while st.step < self.total_steps and not st.stopped:
                xb = self._next_batch()
                if not constant_lr:
                    lr = self.lr_at(st.step, self._elapsed(base, t0))
                    for g in self.opt.param_groups:
                        g["lr"] = lr
                out = self.train_step(xb, grad_sums)
                beta = out["beta"]
                if out["ok"]:
                    st.bad_in_row = 0
                    acc["loss"] += out["loss"]
                    acc["n"] += 1
                    for k, v in out["stats"].items():  # tensors: read once per record, not per step
                        acc[k] = acc.get(k, 0.0) + v
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
                st.elapsed = self._elapsed(base, t0)
                if s.time_limit is not None and st.elapsed >= s.time_limit:
                    st.stopped, end = "time limit", True
                if st.step % self.val_every == 0 or end:
                    now = time.perf_counter()
                    local_steps = acc["n"]
                    if self.dist.active:  # the record is over all ranks, not this one's
                        keys = sorted(acc)
                        acc = dict(zip(keys, all_reduce_sum([float(acc[k]) for k in keys], self.device)))
                    n = max(acc["n"], 1)
                    record = {"step": st.step, "epoch": st.epoch, "loss": acc["loss"] / n}
                    record.update({k: float(v) / n for k, v in acc.items() if k not in ("loss", "n")})
                    record.setdefault("rec", 0.0)
                    record.setdefault("kl", 0.0)
                    record.update({"beta": beta, "lr": self.opt.param_groups[0]["lr"], "bad_steps": st.bad_total,
                                   "samples_per_s": local_steps * self.batch_size / max(now - t_last, 1e-9),
                                   "time": base + now - t0})
                    record.update(self.model.extra_stats())
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
                    acc = {"loss": 0.0, "n": 0}
                    t_last = time.perf_counter()
                if st.step % self.ckpt_every == 0 or end:
                    self.save("last", last_val)
                for cb in self.callbacks:
                    cb(self, {"step": st.step, "loss": out["loss"]})
        if pbar is not None:
            pbar.close()
        if self.ema is not None and not self._has_val():  # no validation to pick one: the average is 'best'
            self.save("best", last_val)
        if st.stopped == "non-finite":
            raise TrainingError(
                f"stopped at step {st.step}: {st.bad_in_row} non-finite losses or gradients in a row; "
                f"lower train.lr, set train.grad_clip, or check the data for extreme values"
            )
        best = {"best_val_elbo": st.best_val} if self.selection == "val_elbo" else {
            "best_val_elbo": None, f"best_{self.selection}": st.best_val}
        return {"steps": st.step, "epochs": st.epoch, **best, "best_step": st.best_step,
                "bad_steps": st.bad_total, "stopped": st.stopped or "completed", "train_seconds": time.perf_counter() - t_wall,
                **({"train_cpu_seconds": st.elapsed} if s.time_clock == "cpu" else {})}

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
