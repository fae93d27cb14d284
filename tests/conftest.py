"""Suite-wide fixtures, and the suite's worker processes."""

from __future__ import annotations

import os

import pytest
import torch

MAX_WORKERS = 4  # each worker imports torch and builds the session fixtures once


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The whole suite (``pytest`` with no test named) runs in one pytest-xdist worker per CPU core, at most
    MAX_WORKERS, a module's tests in one worker (``--dist loadscope``: a module-scoped fixture is built once).
    Tests named on the command line, ``-n N`` (``-n 0``: none), ``-p no:xdist``, or one core: as asked, or in
    this process."""
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return
    if config.option.numprocesses is not None or config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores > 1:  # what ``-n N --dist loadscope`` sets (whether xdist's own hook has run yet or not)
        config.option.numprocesses = min(cores, MAX_WORKERS)
        config.option.tx = ["popen"] * config.option.numprocesses
        if config.option.dist == "no":
            config.option.dist = "loadscope"


@pytest.fixture(autouse=True)
def _one_thread():
    """One CPU thread per test, restored afterwards: the tensors are tiny, a second OpenMP thread only adds
    contention on a shared 2-core machine, and a test that sets the thread count cannot leak it."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="device for the tests that take the `device` fixture "
                     "(cpu, cuda, cuda:N, mps); CPU is the default")


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The device given with ``pytest --device``; the tests that take it run their models there."""
    name = request.config.getoption("--device")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"--device {name}: no CUDA device here")
    return dev


M2_RUN = ["model.family=m2", "model.objective=m2", "data.labels=100", "model.warmup_steps=0", "model.free_bits=0",
          "model.hidden=[64]", "model.latent_dim=4", "train.steps=200", "train.val_every=100", "train.threads=1",
          "eval.batch_size=500"]


@pytest.fixture(scope="session")
def m2_run(tmp_path_factory):
    """(run folder, summary) of one tiny semi-supervised M2 run on digits (200 steps, 100 labels, hidden [64]),
    trained once per test session for the M2 figure, report, classify and evaluate tests."""
    from vaekit.config import apply_overrides
    from vaekit.registry import load_preset
    from vaekit.runs import train_run

    run_dir = tmp_path_factory.mktemp("m2") / "run"
    cfg = apply_overrides(load_preset("digits-quick"), M2_RUN)
    cfg.train.progress = False
    return run_dir, train_run(cfg, run_dir)
