"""Where a training step of vaekit's Trainer spends its time against the minimal loop of bench/throughput.py
(784-400-20 Bernoulli MLP, batch 128, fused Adam, MNIST or random data of its shape), three setups in one process:

  minimal   the hand-written loop of bench/throughput.py (its ExamplesVAE, BCE-with-logits, closed-form KL)
  model     vaekit's model and ELBO objective in the same hand-written loop (what the model contract costs)
  trainer   vaekit's Trainer (what the trainer adds: the NaN/inf guard, running statistics, events)

Default: the setups take turns of --chunk steps (rotating order) for --rounds rounds after a warm-up, and each
chunk's CPU time is taken in the thread that ran it; printed per setup are the minimum, 10th percentile and
median ms per step of process CPU time (on a shared machine the low quantiles are the steadier figures:
contention only adds time), and the ratios of those figures. With --threads 1 (the default) the CPU time is the
step's work alone; with more, it includes the OpenMP workers' waiting. The trainer writes no checkpoint or
record during the measured steps.

--ops: instead, torch.profiler over --chunk steps of each setup: operator calls per step and self CPU time per
step, for the operators whose call counts differ between the setups.

Usage: python bench/step_profile.py [--threads 1] [--chunk 10] [--rounds 60] [--ops]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable, Iterator

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import BATCH, ExamplesVAE, load_x, minimal_step  # noqa: E402

WARMUP = 30


def minimal_steps(x: torch.Tensor) -> Iterator[None]:
    model = ExamplesVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(0)
    while True:
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0] - BATCH + 1, BATCH):
            xb = x.index_select(0, perm[i:i + BATCH])
            minimal_step(model, opt, xb)
            yield


def _vae():
    from vaekit.models import build_vae

    torch.manual_seed(0)
    return build_vae((784,), arch="mlp", latent_dim=20, hidden=(400,), likelihood="bernoulli")


def model_steps(x: torch.Tensor) -> Iterator[None]:
    from vaekit.objectives import ELBO

    model, objective = _vae(), ELBO()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(0)
    step = 0
    while True:
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0] - BATCH + 1, BATCH):
            loss = objective(model, x.index_select(0, perm[i:i + BATCH]), step=step, check=False).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            yield


def _trainer(x: torch.Tensor, callback: Callable) -> Any:
    from vaekit.config import TrainConfig
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer

    settings = TrainConfig(steps=10**9, batch_size=BATCH, lr=1e-3, progress=False, val_every=10**9,
                           checkpoint_every=10**9, threads=torch.get_num_threads())
    return Trainer(_vae(), ELBO(), x, None, settings=settings, run_dir=None, callbacks=[callback])


def trainer_steps(x: torch.Tensor) -> Iterator[None]:
    """The Trainer's fit() in a thread of its own, one step per next() (a callback hands control back)."""
    go, done = threading.Semaphore(0), threading.Semaphore(0)

    def handback(trainer: Any, record: dict) -> None:
        done.release()
        go.acquire()

    threading.Thread(target=_trainer(x, handback).fit, daemon=True).start()
    while True:
        done.acquire()  # the first acquire waits for step 1
        yield
        go.release()


def trainer_profile(x: torch.Tensor, steps: int) -> Any:
    """torch.profiler over ``steps`` steps of the Trainer after the warm-up (in the thread that runs fit)."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU])

    class Done(Exception):
        pass

    def window(trainer: Any, record: dict) -> None:
        if record["step"] == WARMUP:
            prof.__enter__()
        elif record["step"] == WARMUP + steps:
            prof.__exit__(None, None, None)
            raise Done

    try:
        _trainer(x, window).fit()
    except Done:
        pass
    return prof


SETUPS: dict[str, Callable[[torch.Tensor], Iterator[None]]] = {
    "minimal": minimal_steps, "model": model_steps, "trainer": trainer_steps}


def timed(x: torch.Tensor, chunk: int, rounds: int) -> None:
    gens = {n: f(x) for n, f in SETUPS.items()}
    for g in gens.values():
        for _ in range(WARMUP):
            next(g)
    ms: dict[str, list[float]] = {n: [] for n in gens}
    names = list(gens)
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            g, t = gens[n], time.process_time()  # the process clock: the trainer's steps run in its own thread
            for _ in range(chunk):
                next(g)
            ms[n].append(1e3 * (time.process_time() - t) / chunk)
    figs = {n: (min(v), statistics.quantiles(v, n=10)[0], statistics.median(v)) for n, v in ms.items()}
    for n, (lo, p10, med) in figs.items():
        print(f"{n:8} CPU ms/step: min {lo:.3f}  p10 {p10:.3f}  median {med:.3f}")
    for a, b in (("minimal", "trainer"), ("minimal", "model"), ("model", "trainer")):
        r = [figs[a][i] / figs[b][i] for i in range(3)]
        print(f"speed of {b} / {a}: {r[0]:.3f} (min)  {r[1]:.3f} (p10)  {r[2]:.3f} (median)")


def op_counts(x: torch.Tensor, chunk: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    table: dict[str, dict[str, tuple[float, float]]] = {}
    for n, f in SETUPS.items():
        if n == "trainer":
            prof = trainer_profile(x, chunk)
        else:
            g = f(x)
            for _ in range(WARMUP):
                next(g)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(chunk):
                    next(g)
        table[n] = {e.key: (e.count / chunk, e.self_cpu_time_total / chunk) for e in prof.key_averages()}
        total = sum(v[1] for v in table[n].values())
        print(f"{n:8} {sum(v[0] for v in table[n].values()):6.0f} operator calls per step, self CPU "
              f"{total / 1e3:.3f} ms per step (profiled)")
    print(f"\n{'operator (calls per step, self CPU us per step)':52}" + "".join(f"{n:>20}" for n in table))
    for key in sorted(set().union(*table.values())):
        rows = [table[n].get(key, (0.0, 0.0)) for n in table]
        if len({c for c, _ in rows}) > 1:
            print(f"{key[:52]:52}" + "".join(f"{c:9.1f} {t:9.1f}us" for c, t in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=10, help="steps per turn (--ops: steps profiled)")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--ops", action="store_true", help="operator counts per step instead of timings")
    a = ap.parse_args()
    from vaekit.tuning import tune_process

    tune_process()  # as the CLI and bench/throughput.py's workers do, before any parallel op
    torch.set_num_threads(a.threads)
    x, source = load_x()
    print(f"data: {source}; batch {BATCH}; torch {torch.__version__}, {a.threads} thread(s)")
    op_counts(x, a.chunk) if a.ops else timed(x, a.chunk, a.rounds)


if __name__ == "__main__":
    main()
