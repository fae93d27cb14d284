"""Progress where users look (a bar in terminals and notebooks, ETA lines in logs) and logging without setup."""

from __future__ import annotations

import logging
import subprocess
import sys
import types

import pytest
import torch

import vaekit.progress as progress


@pytest.fixture
def digits_x() -> torch.Tensor:
    from sklearn.datasets import load_digits

    x, _ = load_digits(return_X_y=True)
    return torch.tensor(x[:64] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)  # (64, 1, 8, 8) in [0, 1]


@pytest.fixture
def tiny_vae():
    from vaekit.config import ModelConfig
    from vaekit.registry import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(latent_dim=3, hidden=[16]), (1, 8, 8)).eval()


def test_no_bar_without_a_viewer_and_a_tqdm_auto_bar_with_one(monkeypatch):
    assert not progress.interactive()  # pytest captures stderr: no terminal, no kernel
    assert progress.progress_bar(10) is None
    monkeypatch.setattr(progress, "interactive", lambda: True)
    from tqdm.auto import tqdm

    bar = progress.progress_bar(10, desc="x")
    assert isinstance(bar, tqdm) and bar.total == 10
    bar.close()
    assert progress.progress_bar(10, enabled=False) is None


def test_a_notebook_kernel_counts_as_a_viewer(monkeypatch):
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert progress.interactive()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not progress.interactive()  # plain Python with IPython merely imported


def test_log_lines_carry_the_rate_and_the_time_left(caplog):
    with caplog.at_level(logging.INFO, logger="vaekit"):
        with progress.Progress(100, desc="work", unit="example", log_every=0) as p:
            p.update(25)
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert msg.startswith("work: 25 / 100 examples,") and "examples/s" in msg and msg.endswith("left")


def test_importance_sampling_reports_progress_with_an_eta(tiny_vae, digits_x, caplog, monkeypatch):
    from vaekit.evaluation import estimate_log_likelihood

    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    with caplog.at_level(logging.INFO, logger="vaekit"):
        estimate_log_likelihood(tiny_vae, digits_x[:3], k=4, seed=0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("log p(x), K=4")]
    assert lines[-1].startswith("log p(x), K=4: 3 / 3 examples") and lines[-1].endswith("0:00 left")


def test_training_shows_a_bar_where_someone_watches(tiny_vae, digits_x, tmp_path, monkeypatch, capsys):
    from vaekit.config import TrainConfig
    from vaekit.objectives import ELBO
    from vaekit.training.trainer import Trainer

    monkeypatch.setattr(progress, "interactive", lambda: True)
    settings = TrainConfig(steps=4, batch_size=8, val_every=2)
    Trainer(tiny_vae, ELBO(), digits_x[:32], digits_x[32:48], settings=settings, run_dir=tmp_path).fit()
    err = capsys.readouterr().err
    assert "4/4" in err and "step" in err


SCRIPT = """
import logging, sys
from vaekit.progress import ensure_visible_logging
{before}
first = ensure_visible_logging()
logging.getLogger("vaekit.train").info("shown-by-default")
logging.basicConfig(level=logging.WARNING, format="app: %(message)s")  # the application sets logging up later
second = ensure_visible_logging()  # what the next long vaekit operation calls first: the default steps aside
logging.getLogger("vaekit.train").info("hidden-by-the-app")
logging.getLogger("vaekit.train").warning("once")
print(first, second)
"""


def test_logging_is_visible_without_setup_and_steps_aside_for_the_application():
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(before="")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]
    assert r.stderr.splitlines() == ["shown-by-default", "app: once"]


def test_no_default_handler_when_the_application_configured_logging_first():
    before = 'logging.basicConfig(level=logging.WARNING, format="app: %(message)s")'
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(before=before)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"] and r.stderr.splitlines() == ["app: once"]


def test_importing_vaekit_configures_no_logging():
    code = ("import logging, vaekit, vaekit.progress, vaekit.training.trainer\n"
            "print(logging.getLogger('vaekit').handlers, logging.getLogger().handlers)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[] []"
