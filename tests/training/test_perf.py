"""The trainer's lean Adam step against torch.optim.Adam.step: the same update, bit for bit, and its fall-backs."""

import copy

import pytest
import torch

from vaekit.training.perf import AdamStep, make_adam


def _pair(weight_decay=0.0, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin.load_state_dict(net.state_dict())
    return (net, make_adam(net.parameters(), lr=1e-2, weight_decay=weight_decay),
            twin, make_adam(twin.parameters(), lr=1e-2, weight_decay=weight_decay))


def _grads(net, x):
    for p in net.parameters():
        p.grad = None
    net(x).pow(2).sum().backward()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_lean_step_equals_adam_step_bit_for_bit(weight_decay):
    net, opt, twin, opt2 = _pair(weight_decay)
    lean = AdamStep(opt2)
    if not lean.usable:
        pytest.skip("this torch build has no fused CPU Adam; AdamStep then calls opt.step() itself")
    g = torch.Generator().manual_seed(1)
    for i in range(6):
        x = torch.randn(4, 5, generator=g)
        if i == 3:  # a learning-rate change (schedules write the param groups) is picked up
            for o in (opt, opt2):
                o.param_groups[0]["lr"] = 3e-3
        _grads(net, x)
        _grads(twin, x)
        opt.step()
        lean()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    for k in s1:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s1[k][name], s2[k][name])
    assert float(s2[0]["step"]) == 6


def test_lean_step_falls_back_where_its_assumptions_do_not_hold():
    net, opt, twin, opt2 = _pair()
    lean = AdamStep(opt2)
    x = torch.randn(4, 5)
    _grads(net, x)
    _grads(twin, x)
    net[2].bias.grad = twin[2].bias.grad = None  # a parameter without a gradient: Adam skips it, and so must we
    opt.step()
    lean()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert 5 not in opt2.state_dict()["state"] or not opt2.state_dict()["state"][5]
    calls = []
    opt2.register_step_post_hook(lambda *a: calls.append(1))  # hooks only run through opt.step()
    _grads(twin, x)
    lean()
    assert calls == [1]
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    assert not AdamStep(sgd).usable
    assert not AdamStep(torch.optim.Adam(net.parameters(), amsgrad=True)).usable


def test_flush_denormals_reaches_the_intra_op_threads():
    np = pytest.importorskip("numpy")
    from vaekit.training.perf import set_flush_denormal_all_threads

    n = 1 << 21
    sub = torch.from_numpy(np.full(n, 1e-39, dtype=np.float32))  # subnormal float32, made without arithmetic
    half = torch.from_numpy(np.full(n, 0.5, dtype=np.float32))
    threads = torch.get_num_threads()
    torch.ones(n).mul_(2)  # a parallel op first: the OpenMP team exists before the flag is set
    try:
        if not torch.set_flush_denormal(True):
            pytest.skip("this CPU has no flush-to-zero control")
        got = set_flush_denormal_all_threads(True)
        if threads > 1 and got == 1:
            pytest.skip("torch's intra-op threads are not GNU OpenMP here: only the calling thread is set")
        assert got == threads
        assert int((sub * half != 0).sum()) == 0  # every chunk of the parallel product flushed, whichever thread ran it
    finally:
        set_flush_denormal_all_threads(False)
    assert int((sub * half != 0).sum()) == n  # and off again everywhere: the subnormals are back


def test_lean_step_follows_a_reloaded_optimizer_state():
    net, opt, twin, opt2 = _pair()
    lean = AdamStep(opt2)
    x = torch.randn(4, 5)
    for _ in range(2):
        _grads(net, x), _grads(twin, x)
        opt.step(), lean()
    saved = copy.deepcopy(opt2.state_dict())  # a checkpoint: two more steps, then back to it (a resume)
    for _ in range(2):
        _grads(twin, x)
        lean()
    twin.load_state_dict(net.state_dict())
    opt2.load_state_dict(saved)  # new state tensors: the cached lists must not keep updating the old ones
    for _ in range(3):
        _grads(net, x), _grads(twin, x)
        opt.step(), lean()
    for a, b in zip(net.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert float(opt2.state_dict()["state"][0]["step"]) == 5
