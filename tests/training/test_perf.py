"""The trainer's performance helpers (public APIs only) and the CLI's start-up tuning module."""

import copy
import subprocess
import sys

import pytest
import torch

from vaekit.training.perf import AdamStep, GradSums, make_adam


def test_make_adam_is_fused_where_supported():
    opt = make_adam([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults.get("fused") or opt.defaults.get("foreach")


@pytest.mark.parametrize("options", [{"fused": True}, {"fused": False}, {"fused": False, "amsgrad": True,
                                                                        "weight_decay": 0.1}])
def test_adam_step_gives_the_numbers_of_opt_step_through_reloads_lr_changes_and_missing_gradients(options):
    """AdamStep against Adam.step, bit for bit, over 12 steps of two parameter groups: learning-rate changes, a
    load_state_dict mid-way (the state is replaced: its lists must be taken again), and steps where a parameter
    has no gradient (Adam.step skips it)."""
    fused = options.pop("fused")

    def setup():
        torch.manual_seed(0)
        a, b = torch.nn.Linear(5, 4), torch.nn.Parameter(torch.randn(3))
        opt = make_adam(a.parameters(), lr=0.01, fused=fused)
        opt.add_param_group({"params": [b]})
        for g in opt.param_groups:
            g.update(options)
        return a, b, opt

    def train(step_fn_of, reload_at=6):
        a, b, opt = setup()
        step = step_fn_of(opt)
        x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
        for t in range(12):
            for p in (*a.parameters(), b):
                p.grad = None
            loss = a(x).square().mean() + (b.square().sum() if t not in (3, 4) else 0.0)  # b: no grad at 3, 4
            loss.backward()
            for g in opt.param_groups:
                g["lr"] = 0.01 / (1 + t)
            step()
            if t == reload_at:
                opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # new tensors, as from a checkpoint
        return [p.detach() for p in (*a.parameters(), b)], opt.state_dict()["state"]

    want, want_state = train(lambda opt: opt.step)
    got, got_state = train(AdamStep)
    assert all(torch.equal(w, g) for w, g in zip(want, got))
    for i in want_state:
        assert all(torch.equal(want_state[i][k], got_state[i][k]) for k in want_state[i])
    _, _, opt = setup()
    calls = []
    opt.register_step_post_hook(lambda *a: calls.append(1))
    step = AdamStep(opt)
    for _ in range(3):
        for p in (p for g in opt.param_groups for p in g["params"]):
            p.grad = torch.ones_like(p)
        step()
    assert len(calls) == 1  # opt.step() ran once, to create the state; then the functional form


def test_grad_sums_see_every_gradient_and_go_away():
    lin = torch.nn.Linear(4, 3)
    params = list(lin.parameters())
    with GradSums(params) as gs:
        lin(torch.ones(2, 4)).sum().backward()
        assert torch.allclose(gs.total(), sum(p.grad.sum() for p in params))
        assert float(gs.total()) == 0.0  # read once
        for p in params:
            p.grad = None
        lin.weight.register_hook(lambda g: g * float("nan"))
        lin(torch.ones(2, 4)).sum().backward()
        assert not torch.isfinite(gs.total())
    lin(torch.ones(2, 4)).sum().backward()
    assert gs.parts == []  # hooks removed on exit


def test_grad_sums_skip_frozen_parameters():
    """A frozen parameter (M1+M2's M1, which sits in the optimizer's parameters) has no gradient to sum."""
    lin, frozen = torch.nn.Linear(4, 3), torch.nn.Linear(4, 4).requires_grad_(False)
    with GradSums(list(frozen.parameters()) + list(lin.parameters())) as gs:
        lin(frozen(torch.ones(2, 4))).sum().backward()
        assert torch.allclose(gs.total(), sum(p.grad.sum() for p in lin.parameters()))


def test_start_up_tuning_flushes_denormals_in_worker_threads():
    """vaekit.tuning set before the first parallel op: subnormals become zero in every intra-op thread."""
    code = (
        "import torch, vaekit.tuning as t; ok = t.tune_process(); torch.set_num_threads(2);"
        "x = torch.full((2_000_000,), 1e-39); y = x * 0.5;"
        "print(ok['flush_denormals'], int((y != 0).sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[0] == "True":  # x86: FTZ/DAZ supported
        assert out[1] == "0"
    code_off = "import torch; x = torch.full((2_000_000,), 1e-39); print(int(((x * 0.5) != 0).sum()))"
    assert subprocess.run([sys.executable, "-c", code_off], capture_output=True, text=True,
                          check=True).stdout.split() == ["2000000"]


def test_library_import_does_not_tune_the_process():
    """Importing the library (training, evaluation, run orchestration) leaves subnormals alone (one process)."""
    code = ("import torch, vaekit.training, vaekit.evaluation, vaekit.run; x = torch.full((4,), 1e-39);"
            "print(int(((x * 0.5) != 0).sum()))")
    flag = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert flag == ["4"]


def test_adam_betas_reach_the_trainers_optimizer_and_bad_ones_are_refused():
    """train.betas sets Adam's (beta1, beta2) (Pyro's SS-VAE trains with beta1 = 0.95): the optimizer's
    defaults carry it, its first moment decays by beta1 (one step from zero: m = (1 - beta1) g), and values
    outside [0, 1) or not two of them are a ConfigError naming the key."""
    import pytest

    from vaekit.config import ConfigError, RunConfig, apply_overrides, validate
    from vaekit.models import build_vae
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer

    cfg = validate(apply_overrides(RunConfig(), ["train.betas=[0.95, 0.99]"]))
    assert cfg.train.betas == [0.95, 0.99]
    for fused in (True, False):
        p = torch.nn.Parameter(torch.zeros(3))
        opt = make_adam([p], lr=1e-3, betas=tuple(cfg.train.betas), fused=fused)
        assert opt.defaults["betas"] == (0.95, 0.99)
        p.grad = torch.tensor([1.0, -2.0, 4.0])
        opt.step()
        assert torch.allclose(opt.state[p]["exp_avg"], 0.05 * p.grad)
    cfg.train.progress, cfg.train.steps = False, 1
    tr = Trainer(build_vae((6,), latent_dim=2, hidden=[4]), ELBO(), torch.rand(8, 6), None, settings=cfg.train,
                 run_dir=None)
    assert tr.opt.defaults["betas"] == (0.95, 0.99)
    for bad in ("[0.9]", "[0.9, 1.0]", "[-0.1, 0.999]", "[0.9, 0.99, 0.9]"):
        with pytest.raises(ConfigError, match="train.betas"):
            validate(apply_overrides(RunConfig(), [f"train.betas={bad}"]))
