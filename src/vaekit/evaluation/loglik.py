"""Importance-sampled estimate of log p(x) with a standard error.

Rezende et al. 2014, "Stochastic Backpropagation and Approximate Inference in Deep Generative Models",
Sec. 6 / Appendix E, and Burda et al. 2016, "Importance Weighted Autoencoders", Eq. 8 and Sec. 5:

    log p(x) ~= log (1/K) sum_k w_k,   w_k = p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x),

i.e. ``logsumexp_k log w_k - log K``. It is a stochastic lower bound (IWAE_K) whose expectation rises
monotonically to log p(x) as K grows (Burda et al. Theorem 1); K = 5000 is the usual reporting setting.

Any model that speaks the contract works (VAE, Ladder VAE, flow posteriors): the weights come from
``vaekit.objectives.log_weights``. The K samples are
drawn in chunks of ``chunk_size`` and merged with a running logsumexp, so memory is bounded by
``batch_size * chunk_size`` decoded samples whatever K is.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from vaekit.objectives.bounds import log_weights as objective_log_weights
from vaekit.progress import Progress
from vaekit.utils import (
    check_positive,
    as_data_tensor,
    batches,
    evaluation_context,
    mean_and_stderr,
    model_device,
)

__all__ = ["LogLikelihoodResult", "estimate_log_likelihood", "iw_log_likelihood", "cpu_supports_bf16",
           "cpu_supports_fp16", "EVAL_PRECISIONS", "decoder_dtype_for",
           "auto_chunk_size", "NonFiniteModelError"]

log = logging.getLogger(__name__)


class NonFiniteModelError(RuntimeError, ValueError):
    """The model gives NaN log-weights on the data (a diverged run, or data far outside what it was trained on).

    A ValueError too: a bad model handed to a command is bad input, reported in one line."""

#: decoded data elements (chunk * batch * elements per example) per log_weights call when chunk_size=None:
#: 2**20 floats = 4 MB per likelihood temporary (K = 5000 MNIST samples go in 4 calls of 1250), about one core's
#: L2 cache; on the 2-core dev machine chunks of 1250 ran 1.4-1.5x faster than one call of 5000 (35-37 vs
#: 24 points/s, bench/iw_speed.py), whose temporaries spill out of cache and are re-faulted on every call.
CHUNK_ELEMENTS = 1 << 20


@dataclass
class LogLikelihoodResult:
    """mean: average estimated log p(x) in nats per example; per_example: (N,) float64 estimates;
    stderr: std(per_example) / sqrt(N), the standard error of ``mean`` over data points (it includes the Monte
    Carlo noise of each estimate, not the downward bias of a finite K); k: importance samples per example."""

    mean: float
    stderr: float
    per_example: torch.Tensor
    k: int
    mc_var: torch.Tensor | None = None  # (N,) delta-method Monte Carlo variance of each example's estimate

    @property
    def mc_stderr(self) -> float:
        """Monte Carlo standard error of ``mean`` for these examples: sqrt(sum of mc_var) / N, where each
        example's variance is the delta-method Var(w) / (K E[w]^2) from its own K weights (NaN if not recorded).
        ``stderr`` is the spread over examples; this is how far another draw of the K samples could move it."""
        if self.mc_var is None:
            return float("nan")
        return float(self.mc_var.sum().sqrt() / self.mc_var.numel())

    def to_dict(self) -> dict[str, float | int]:
        return {"log_px": self.mean, "log_px_stderr": self.stderr, "log_px_mc_stderr": self.mc_stderr, "k": self.k,
                "n": int(self.per_example.numel())}


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX tiles); without it bf16 matmuls are
    emulated and usually slower than float32."""
    try:  # the Linux CPU flags (torch has no public query)
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_supports_fp16() -> bool:
    """True when the CPU has native fp16 arithmetic (AVX512-FP16 or AMX-FP16 tiles)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_fp16" in flags or "amx_fp16" in flags


EVAL_PRECISIONS = ("fp32", "bf16", "fp16")


def decoder_dtype_for(precision: str | None, device: torch.device | str, bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype of the decoder net for an evaluation ``precision`` (fp32 | bf16 | fp16; None and
    ``bf16=True``, the older flag, are accepted) on ``device``; None for fp32. ValueError (one line) for an
    unknown name, for both flags disagreeing, and for fp16 on a CPU without native fp16 (there torch would
    emulate it, slower than fp32 and with fp16's narrow range; bf16 has float32's range)."""
    if bf16:
        if precision not in (None, "bf16"):
            raise ValueError(f"bf16=True and precision={precision!r} disagree; give precision alone")
        precision = "bf16"
    precision = "fp32" if precision is None else precision
    if precision not in EVAL_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(EVAL_PRECISIONS)}")
    dev = torch.device(device)
    if precision == "fp16" and dev.type == "cpu" and not cpu_supports_fp16():
        raise ValueError("precision fp16 needs a GPU (--device cuda) or a CPU with native fp16 (avx512_fp16/"
                         "amx_fp16), which this one lacks; use bf16 or fp32 on this CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def auto_chunk_size(k: int, batch_size: int, example_numel: int) -> int:
    """Samples per ``log_weights`` call: all K if ``batch_size * K * example_numel <= CHUNK_ELEMENTS``, else
    K split into equal-sized chunks that fit (at least 1)."""
    per_call = max(1, CHUNK_ELEMENTS // max(1, batch_size * example_numel))
    n_chunks = math.ceil(k / per_call)
    return math.ceil(k / n_chunks)


def iw_log_likelihood(
    model: nn.Module,
    x: torch.Tensor,
    k: int,
    chunk_size: int | None = None,
    log_weights: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    mc_var: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """(B,) log (1/K) sum_k w_k for one batch, the K samples drawn ``chunk_size`` at a time and merged by a
    running logsumexp (float64 accumulator). log_weights: the function to call (default
    ``model.log_weights``, e.g. a compiled version). No grad/eval handling: callers wrap it."""
    k = check_positive("k", k)
    if chunk_size is None:
        chunk = auto_chunk_size(k, x.shape[0], x[0].numel())
    else:
        chunk = check_positive("chunk_size", chunk_size)
    fn = (lambda xb, c: objective_log_weights(model, xb, c)) if log_weights is None else log_weights
    acc = None
    done = 0
    while done < k:
        c = min(chunk, k - done)
        lw = fn(x, c)  # (c, B)
        if tuple(lw.shape) != (c, x.shape[0]):
            raise RuntimeError(
                f"log_weights(x, {c}) of {type(model).__name__} returned shape {tuple(lw.shape)} for a batch of "
                f"{x.shape[0]}; expected ({c}, {x.shape[0]}) (a model bug: check how the encoder flattens x)"
            )
        part = torch.logsumexp(lw.double(), 0)  # (B,)
        acc = part if acc is None else torch.logaddexp(acc, part)
        if mc_var is not None:  # running log sum of w^2 for the delta-method variance
            part2 = torch.logsumexp(2 * lw.double(), 0)
            acc2 = part2 if done == 0 else torch.logaddexp(acc2, part2)
        done += c
    if mc_var is not None:  # Var(log mean w) ~ (K sum w^2 / (sum w)^2 - 1) / K
        mc_var.append(((acc2 - 2 * acc + math.log(k)).exp() - 1).clamp(min=0) / k)
    return acc - math.log(k)


def estimate_log_likelihood(
    model: nn.Module,
    x: Any,
    k: int = 5000,
    batch_size: int = 1,
    chunk_size: int | None = None,
    bf16: bool = False,
    seed: int | None = None,
    num_threads: int | None = None,
    compiled: bool = False,
    check: bool = True,
    shard: Any = None,
    precision: str | None = None,
) -> LogLikelihoodResult:
    """Importance-sampled log p(x) per example (Burda et al. 2016, Eq. 8 with K = ``k``), mean and s.e.

    x: (N, *data_shape) tensor (or ``ArrayData``). batch_size: data points per ``log_weights`` call; the
        default 1 (one point, its K samples decoded in batched calls) was as fast as 4 points per call
        and simpler on CPU in bench/iw_speed.py. chunk_size: samples per call (None: all K when the decoded batch holds at most
        ``CHUNK_ELEMENTS`` data elements, else equal chunks that do). Results for one seed depend on
        ``batch_size`` and ``chunk_size`` only through the order random numbers are drawn in.
    precision: fp32 (default) | bf16 | fp16: the decoder net under autocast to that dtype (``decoder_dtype`` of
        the model's forward; opt-in; log-densities stay float32). bf16 is fast only on CPUs with native bf16
        (see ``cpu_supports_bf16``) or on GPUs, and adds a small bias (bench/iw_speed.py); fp16 is for GPUs (on a
        CPU only with native fp16, ``cpu_supports_fp16``; else a ValueError, see ``decoder_dtype_for``).
    bf16: the older flag, the same as ``precision="bf16"``.
    seed: seeds a private copy of the global RNG (the caller's RNG is left untouched); None draws from it. With
        a seed and ``batch_size=1`` every example's noise is keyed by its index (stream ``seed + i``), so a point's
        estimate does not depend on which other points are evaluated with it, or on which process does it.
    shard: a ``vaekit.training.distributed.DistInfo``: under torchrun each rank estimates a contiguous part of x
        and the per-example values are gathered (no padded duplicates), so every rank gets exactly the
        single-process result (with a seed and batch_size=1).
    num_threads: ``torch.set_num_threads`` while evaluating (restored afterwards).
    compiled: run ``torch.compile`` of the log-weights function (opt-in: needs a C++ compiler on CPU, costs 5-20 s of
        compilation per model and input shape, then fuses the likelihood's elementwise passes). For the MNIST
        MLP on 2 CPU cores it measured 0.9-1.1x eager speed on an idle machine and 1.5x under contention
        (bench/iw_speed.py); the decoder matmul dominates. Its random numbers come from inductor's own
        generator, so a seed gives other (equally valid) samples than eager mode.
    Raises ValueError on bad arguments or data; NonFiniteModelError (a RuntimeError and a ValueError) if the
    model returns NaN log-weights.
    """
    x = as_data_tensor(x)
    k = check_positive("k", k)
    if check:
        model.check_input(x)
    dtype = decoder_dtype_for(precision, model_device(model), bf16)
    if dtype == torch.bfloat16 and model_device(model).type == "cpu" and not cpu_supports_bf16():
        log.warning("bf16 requested but this CPU has no native bf16 (avx512_bf16/amx); expect it to be slower")
    out: list[torch.Tensor] = []
    var: list[torch.Tensor] = []

    def weights(xb: torch.Tensor, c: int) -> torch.Tensor:
        return objective_log_weights(model, xb, c, decoder_dtype=dtype)

    lo, hi = 0, x.shape[0]
    if shard is not None and shard.active:  # this rank's contiguous part
        bounds = torch.arange(x.shape[0]).tensor_split(shard.world)[shard.rank]
        lo, hi = (int(bounds[0]), int(bounds[-1]) + 1) if bounds.numel() else (0, 0)
    keyed = seed is not None and batch_size == 1
    with evaluation_context(model, seed, num_threads), \
            Progress(hi - lo, desc=f"log p(x), K={k}", unit="example", log=log) as progress:  # bar or ETA lines
        dev = model_device(model)
        fn = torch.compile(weights, dynamic=False) if compiled else weights
        for j, xb in enumerate(batches(x[lo:hi], batch_size, dev)):
            if keyed:  # noise keyed by the example's index
                torch.manual_seed(int(seed) + lo + j)
            out.append(iw_log_likelihood(model, xb, k, chunk_size, fn, mc_var=var).cpu())
            progress.update(xb.shape[0])
    per_example = torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)  # (n,) float64
    if shard is not None and shard.active:
        from vaekit.training.distributed import gather_rows

        per_example = gather_rows(per_example, dev)  # (N,) in index order, on every rank
    mc_var = torch.cat([v.cpu() for v in var]) if var else torch.zeros(0, dtype=torch.float64)
    if shard is not None and shard.active:
        mc_var = gather_rows(mc_var, dev)
    if torch.isnan(per_example).any():
        bad = int(torch.isnan(per_example).sum())
        raise NonFiniteModelError(
            f"{bad} of {per_example.numel()} log p(x) estimates are NaN: the model gives NaN log-weights on these "
            f"data (the run diverged, or the data lie outside the range it was trained on); retrain it with a lower "
            f"train.lr or with train.grad_clip, or check the data")
    mean, stderr = mean_and_stderr(per_example)
    return LogLikelihoodResult(mean, stderr, per_example, k, mc_var)
