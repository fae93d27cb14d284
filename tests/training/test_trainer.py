"""The trainer: exact resume, NaN guard, atomic checkpoints, early stopping, schedules."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vaekit.config import TrainConfig
from vaekit.models import build_vae
from vaekit.objectives import ELBO, Objective
from vaekit.training import CheckpointError, Trainer, TrainingError, load_checkpoint


def _data(n=96, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(4, d, generator=g) > 0.5).float() * 0.9 + 0.05  # 4 noisy binary patterns
    return torch.bernoulli(protos[torch.randint(0, 4, (n,), generator=g)], generator=g)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_vae((16,), hidden=(24,), latent_dim=4)


def _dynamic(x, g):
    return torch.bernoulli(x.clamp(0.05, 0.95), generator=g)


class Kill(Exception):
    pass


class _Altered(Objective):
    """The trainer's objective with each result passed through ``alter(result, n)`` (n: the calls so far)."""

    def __init__(self, real, alter):
        super().__init__()
        self.real, self.alter, self.calls = real, alter, 0

    def forward(self, model, x, step=None, check=True):
        self.calls += 1
        return self.alter(self.real(model, x, step=step, check=check), self.calls)


def _trainer(tmp, steps, callbacks=None, **kw):
    s = TrainConfig(steps=steps, batch_size=10, lr=3e-3, val_every=7, checkpoint_every=5, progress=False,
                    lr_schedule="cosine", **kw)
    x = _data()
    return Trainer(_model(), ELBO(n_samples=2, warmup_steps=10), x[:80], x[80:], settings=s, run_dir=tmp,
                   seed=3, transform=_dynamic, callbacks=callbacks)


def test_killed_and_resumed_run_ends_with_identical_weights(tmp_path):
    full = _trainer(tmp_path / "full", 40)
    full.fit()

    def kill(trainer, rec):
        if rec["step"] == 23:  # last checkpoint was at step 20: steps 21-23 are lost and redone
            raise Kill

    part = _trainer(tmp_path / "part", 40, callbacks=[kill])
    with pytest.raises(Kill):
        part.fit()
    torch.manual_seed(12345)  # a resumed process starts from arbitrary RNG state
    resumed = _trainer(tmp_path / "part", 40)
    resumed.restore(tmp_path / "part" / "last.safetensors")
    assert resumed.state.step == 20
    resumed.fit()
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    # the metrics file has no duplicated steps after the resume
    steps = [json.loads(l)["step"] for l in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
    # and an uninterrupted run differs from one with another seed (the test can fail)
    other = _trainer(tmp_path / "other", 40)
    other.seed = 4
    other.data_gen.manual_seed(4)
    other.fit()
    assert not torch.equal(other.model.encoder.net[0].weight, full.model.encoder.net[0].weight)


def test_nan_guard_skips_and_stops(tmp_path):
    tr = _trainer(tmp_path, 30, max_bad_steps=3)

    def poisoned(r, n):
        if 4 <= n:
            r.loss = r.loss * float("nan")
        return r

    tr.objective = _Altered(tr.objective, poisoned)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    with pytest.raises(TrainingError, match="non-finite"):
        tr.fit()
    assert tr.state.bad_total == 3 and tr.state.step == 6
    # weights after step 3 were never touched by a NaN
    assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


def test_nan_guard_recovers_from_isolated_bad_steps(tmp_path):
    tr = _trainer(tmp_path, 12, max_bad_steps=3)

    def sometimes(r, n):
        if n in (2, 5, 6):
            r.loss = r.loss + float("inf")
        return r

    tr.objective = _Altered(tr.objective, sometimes)
    summary = tr.fit()
    assert summary["bad_steps"] == 3 and summary["steps"] == 12


class _NanBackward(torch.autograd.Function):
    """Identity forward (a finite loss), NaN gradients backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def test_nan_guard_catches_non_finite_gradients_under_a_finite_loss(tmp_path):
    tr = _trainer(tmp_path, 10, max_bad_steps=5)

    def bad_grads(r, n):
        if n in (3, 4):
            r.loss = _NanBackward.apply(r.loss)
        return r

    tr.objective = _Altered(tr.objective, bad_grads)
    summary = tr.fit()
    assert summary["bad_steps"] == 2 and summary["steps"] == 10
    assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values())
    # the gradient hooks of the guard are gone after fit: later backward passes are the user's own
    assert all(not p._post_accumulate_grad_hooks for p in tr.model.parameters())


def test_interrupted_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    tr = _trainer(tmp_path, 5)
    tr.fit()
    path = tmp_path / "last.safetensors"
    before, _ = load_checkpoint(path)

    import vaekit.utils as utils_mod

    real_replace = utils_mod.os.replace

    def broken_replace(src, dst):
        if str(dst).endswith(".safetensors"):
            with open(src, "wb") as f:
                f.write(b"\x00" * 100)  # half-written file, then the process "dies" before the rename
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(utils_mod.os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        tr.save("last")
    after, doc = load_checkpoint(path)
    assert doc["step"] == 5
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_and_truncated_checkpoints_raise_clearly(tmp_path):
    tr = _trainer(tmp_path, 5)
    tr.fit()
    data = (tmp_path / "last.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    for name in ("trunc", "junk"):
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_checkpoint(tmp_path / f"{name}.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_early_stopping_and_best_checkpoint(tmp_path):
    s = TrainConfig(steps=400, batch_size=10, lr=0.05, val_every=2, patience=2, progress=False)
    x = _data()
    tr = Trainer(_model(), ELBO(), x[:80], x[80:], settings=s, run_dir=tmp_path)
    # a validation that never improves after the first one
    vals = iter([-10.0] + [-20.0] * 100)
    tr.validate = lambda: {"val_elbo": next(vals), "val_rec": 0.0, "val_kl": 0.0}
    summary = tr.fit()
    assert summary["stopped"] == "early stopping" and summary["steps"] == 6
    _, doc = load_checkpoint(tmp_path / "best.safetensors")
    assert doc["step"] == 2 and doc["metrics"]["val_elbo"] == -10.0


def test_lr_schedules(tmp_path):
    tr = _trainer(tmp_path, 100)
    tr.s.min_lr = 1e-4
    assert tr.lr_at(0) == pytest.approx(3e-3)
    assert tr.lr_at(50) == pytest.approx(1e-4 + (3e-3 - 1e-4) * 0.5)
    assert tr.lr_at(100) == pytest.approx(1e-4)
    tr.s.time_limit = 10.0  # a time budget that runs out before the steps: the cosine follows the clock
    assert tr.lr_at(0, elapsed=5.0) == pytest.approx(tr.lr_at(50))
    assert tr.lr_at(0, elapsed=20.0) == pytest.approx(1e-4)
    tr.s.lr_schedule, tr.s.lr_decay, tr.s.min_lr = "exponential", 0.5, 0.0
    assert tr.lr_at(2 * tr.steps_per_epoch) == pytest.approx(3e-3 * 0.25)
    tr.s.lr_schedule = "bogus"
    with pytest.raises(ValueError, match="lr_schedule"):
        tr.lr_at(1)


def test_training_lowers_the_loss(tmp_path):
    tr = _trainer(tmp_path, 200)
    tr.s.lr = 1e-2
    tr.fit()
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["val_elbo"] > recs[0]["val_elbo"] + 2.0
    assert all(math.isfinite(r["loss"]) for r in recs)


def test_weight_average_follows_its_recurrence_and_resumes_exactly(tmp_path):
    from vaekit.training.ema import WeightAverage

    m = torch.nn.Linear(3, 2)
    avg = WeightAverage(m, 0.9)
    want = [p.detach().clone() for p in m.parameters()]
    for step in range(30):  # the decay ramps (1+t)/(10+t) up to 0.9
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p))
        avg.update(step)
        d = min(0.9, (1 + step) / (10 + step))
        want = [d * w + (1 - d) * p.detach() for w, p in zip(want, m.parameters())]
    for w, q in zip(want, avg.model.parameters()):
        torch.testing.assert_close(q, w)
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(m, 1.0)

    full = _trainer(tmp_path / "full", 40, ema_decay=0.95)
    full.fit()

    def kill(trainer, rec):
        if rec["step"] == 23:
            raise Kill

    part = _trainer(tmp_path / "part", 40, callbacks=[kill], ema_decay=0.95)
    with pytest.raises(Kill):
        part.fit()
    resumed = _trainer(tmp_path / "part", 40, ema_decay=0.95)
    resumed.restore(tmp_path / "part" / "last.safetensors")
    resumed.fit()
    for a, b in zip(full.ema.model.state_dict().values(), resumed.ema.model.state_dict().values()):
        assert torch.equal(a, b)
    # 'best' holds the averaged weights (validation is done with them), not the trained ones
    tensors, doc = load_checkpoint(tmp_path / "full" / "best.safetensors")
    step = doc["step"]
    assert not torch.equal(tensors["model.decoder.net.0.weight"], full.model.decoder.net[0].weight)
    assert step == full.state.best_step
    assert len(doc["metrics"]["val_kl_dims"]) == 4  # KL per latent dimension recorded at each validation


def test_a_time_limited_run_resumed_with_a_longer_limit_trains_on(tmp_path):
    """`--resume RUN train.time_limit=LONGER` continues a run its budget stopped; the same limit adds nothing."""
    first = _trainer(tmp_path / "r", 10**6, time_limit=0.3)
    first.fit()
    assert first.state.stopped == "time limit"
    same = _trainer(tmp_path / "r", 10**6, time_limit=0.3)
    same.restore(tmp_path / "r" / "last.safetensors")
    same.fit()
    assert same.state.step == first.state.step
    longer = _trainer(tmp_path / "r", 10**6, time_limit=0.8)
    longer.restore(tmp_path / "r" / "last.safetensors")
    longer.fit()
    assert longer.state.step > first.state.step
    assert longer.state.stopped == "time limit" and longer.state.elapsed >= 0.8


def test_early_stopping_writes_last_at_the_stopping_step_and_a_resume_trains_no_further(tmp_path):
    s = TrainConfig(steps=400, batch_size=10, lr=0.05, val_every=2, checkpoint_every=100, patience=2, progress=False)
    x = _data()

    def trainer():
        tr = Trainer(_model(), ELBO(), x[:80], x[80:], settings=s, run_dir=tmp_path)
        vals = iter([-10.0] + [-20.0] * 100)
        tr.validate = lambda: {"val_elbo": next(vals), "val_rec": 0.0, "val_kl": 0.0}
        return tr

    assert trainer().fit()["steps"] == 6
    _, doc = load_checkpoint(tmp_path / "last.safetensors")
    assert doc["step"] == 6 and doc["trainer"]["stopped"] == "early stopping"
    again = trainer()
    again.restore(tmp_path / "last.safetensors")
    summary = again.fit()
    assert summary["steps"] == 6 and summary["stopped"] == "early stopping"


def test_records_count_time_on_the_budget_clock(tmp_path):
    """train.time_clock=cpu: a record's "time" is CPU seconds of training, like the budget it is checked against."""
    import time

    tr = _trainer(tmp_path, 30, time_clock="cpu")
    c0 = time.process_time()
    tr.fit()
    used = time.process_time() - c0
    times = [json.loads(l)["time"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(times) == 5 and times == sorted(times) and 0 <= times[0] and times[-1] <= used
